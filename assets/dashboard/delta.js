// marketcast delta messages (?delta=fossil), applied in the browser.
//
// A full message is a text frame. A delta message is a binary frame:
//   {"seq":N,"ts":T,"base":M,"delta":"fossil"}\n<Fossil delta>
// and applying the delta to the bytes of message M gives the bytes of message N exactly.
// The Fossil delta format: https://fossil-scm.org/home/doc/tip/www/delta_format.wiki
'use strict';

const MarketcastDelta = (() => {
  const DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~';
  const VALUE = new Int8Array(128).fill(-1);
  const MAX_OUTPUT = 64 * 1024 * 1024; // a market message is under 1 MB
  // The most a message may outgrow its base per byte of delta. A message is its base's bytes
  // rearranged plus the delta's literals: a tick is about its base's size, and even a repeated
  // copy costs at least four bytes of delta. A declared size past this is refused before
  // anything is allocated, so a bad delta cannot make the page reserve 64 MB.
  const GROWTH_PER_DELTA_BYTE = 64;
  for (let i = 0; i < DIGITS.length; i++) VALUE[DIGITS.charCodeAt(i)] = i;

  /** Applies a Fossil delta (Uint8Array) to base (Uint8Array); throws on a bad delta. */
  function apply(base, delta) {
    let at = 0;
    const number = () => {
      let n = 0, start = at;
      while (at < delta.length && delta[at] < 128 && VALUE[delta[at]] >= 0) {
        n = n * 64 + VALUE[delta[at++]];
        if (n > 0xffffffff) throw new Error('delta: number too large');
      }
      if (at === start) throw new Error('delta: number expected at ' + at);
      return n;
    };
    const size = number();
    const largest = Math.min(MAX_OUTPUT, base.length + GROWTH_PER_DELTA_BYTE * delta.length);
    if (size > largest) throw new Error(`delta: result too large (${size} bytes declared, at most ${largest})`);
    if (delta[at++] !== 0x0a) throw new Error('delta: no size line');
    const out = new Uint8Array(size);
    let len = 0;
    for (;;) {
      const n = number();
      const op = delta[at++];
      if (op === 0x40) { // '@': copy n bytes from base at offset
        const offset = number();
        if (delta[at++] !== 0x2c) throw new Error('delta: "," expected');
        if (offset + n > base.length || len + n > size) throw new Error('delta: copy out of range');
        out.set(base.subarray(offset, offset + n), len);
        len += n;
      } else if (op === 0x3a) { // ':': n literal bytes
        if (at + n > delta.length || len + n > size) throw new Error('delta: literal out of range');
        out.set(delta.subarray(at, at + n), len);
        len += n;
        at += n;
      } else if (op === 0x3b) { // ';': checksum of the result
        if (len !== size) throw new Error('delta: short result');
        if (n !== checksum(out)) throw new Error('delta: bad checksum');
        return out;
      } else {
        throw new Error('delta: unexpected byte ' + op);
      }
    }
  }

  /** Fossil's checksum: the sum of big-endian 32-bit words, the last padded with zeros. */
  function checksum(b) {
    let sum = 0, i = 0;
    for (; i + 4 <= b.length; i += 4) {
      sum = (sum + ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3])) >>> 0;
    }
    let last = 0;
    for (let k = 0; i + k < b.length; k++) last |= b[i + k] << (24 - 8 * k);
    return (sum + (last >>> 0)) >>> 0;
  }

  /** Keeps the last message and turns each message (string or ArrayBuffer) into its full text. */
  class Rebuilder {
    constructor() { this.seq = null; this.bytes = null; }
    /** The full text of a WebSocket message's data; throws when a delta cannot be applied. */
    take(data) {
      if (typeof data === 'string') {
        const m = /^\{"seq":(\d+),/.exec(data);
        if (m) { this.seq = Number(m[1]); this.bytes = new TextEncoder().encode(data); }
        return data;
      }
      const payload = new Uint8Array(data);
      const nl = payload.indexOf(0x0a);
      if (nl < 0) throw new Error('delta: no header');
      const header = JSON.parse(new TextDecoder().decode(payload.subarray(0, nl)));
      if (header.delta !== 'fossil') throw new Error('delta: format ' + header.delta);
      if (this.bytes === null || header.base !== this.seq) {
        throw new Error(`delta: against ${header.base}, have ${this.seq}`);
      }
      const full = apply(this.bytes, payload.subarray(nl + 1));
      this.seq = header.seq;
      this.bytes = full;
      return new TextDecoder().decode(full);
    }
  }

  return { apply, checksum, Rebuilder };
})();
