-- History: what the original stored (reference A.2), with times as UTC microseconds since the
-- Unix epoch (BIGINT) so the same schema and queries serve SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS tick_data (
    symbol TEXT NOT NULL,
    ts BIGINT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    side TEXT NOT NULL,
    bid DOUBLE PRECISION,
    ask DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS tick_data_symbol_ts ON tick_data (symbol, ts);
CREATE INDEX IF NOT EXISTS tick_data_ts ON tick_data (ts);

CREATE TABLE IF NOT EXISTS candles_1m (
    symbol TEXT NOT NULL,
    ts BIGINT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    active_buy_vol BIGINT NOT NULL,
    active_sell_vol BIGINT NOT NULL,
    PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS foreign_flow (
    symbol TEXT NOT NULL,
    ts BIGINT NOT NULL,
    buy_vol BIGINT NOT NULL,
    sell_vol BIGINT NOT NULL,
    net_vol BIGINT NOT NULL,
    buy_value DOUBLE PRECISION NOT NULL,
    sell_value DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS foreign_flow_symbol_ts ON foreign_flow (symbol, ts);

CREATE TABLE IF NOT EXISTS index_snapshots (
    index_name TEXT NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    change_pct DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS index_snapshots_name_ts ON index_snapshots (index_name, ts);

CREATE TABLE IF NOT EXISTS index_candles_1m (
    index_name TEXT NOT NULL,
    ts BIGINT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    PRIMARY KEY (index_name, ts)
);

CREATE TABLE IF NOT EXISTS derivatives (
    contract TEXT NOT NULL,
    ts BIGINT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    basis DOUBLE PRECISION NOT NULL,
    open_interest BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS derivatives_contract_ts ON derivatives (contract, ts);
