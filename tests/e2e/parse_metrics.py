"""Parses marketcast's /metrics with Prometheus's own OpenMetrics parser (prometheus_client).

Reads the text on stdin; prints one JSON object mapping each sample, written as
`name{label="value",...}` with labels sorted, to its value. Exits non-zero with the parser's
message when the text does not parse.

    curl -s http://127.0.0.1:8000/metrics | python3 tests/e2e/parse_metrics.py
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}"] = s.value
    except Exception as e:  # the parser's own message, one line
        print(f"metrics do not parse: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
