// Building a flatbuffer: the standard back-to-front builder, into one
// buffer that is kept and reused from call to call (it grows, never
// shrinks). The generated slot numbers (`../generated/strategy.ts`) say
// which field goes where.

/** Bytes of the answer at most (ABI.md). */
export const ANSWER_BYTES_MAX: i32 = 256 * 1024;

/** String literals' UTF-8 bytes, by the literal's address. */
const literals = new Map<usize, ArrayBuffer>();

/** Fields in a table at most. */
const FIELDS_MAX: i32 = 64;

@final
export class Builder {
  /** The buffer; data is written at its end, growing towards its start. */
  private buf: usize = 0;
  private cap: i32 = 0;
  /** Bytes free before the data. */
  private space: i32 = 0;
  private minalign: i32 = 1;
  /** The table being built: each field's offset (0: absent). */
  private fields: StaticArray<i32> = new StaticArray<i32>(FIELDS_MAX);
  private fieldCount: i32 = 0;
  private tableStart: i32 = 0;
  /** Whether the answer passed `ANSWER_BYTES_MAX`. */
  overflowed: bool = false;

  /** Starts a new answer in the same buffer. */
  reset(): void {
    if (this.buf == 0) this.grow(1024);
    this.space = this.cap;
    this.minalign = 1;
    this.overflowed = false;
  }

  /** Bytes written so far. */
  @inline offset(): i32 {
    return this.cap - this.space;
  }

  private grow(needed: i32): void {
    let cap = this.cap ? this.cap : 1024;
    while (cap - this.offset() < needed) cap *= 2;
    const buf = heap.alloc(<usize>cap);
    const used = this.offset();
    if (this.buf) {
      memory.copy(buf + <usize>(cap - used), this.buf + <usize>this.space, <usize>used);
      heap.free(this.buf);
    }
    this.buf = buf;
    this.space = cap - used;
    this.cap = cap;
  }

  /** Room for `size` bytes after `extra`, aligned to `size`. */
  private prep(size: i32, extra: i32): void {
    if (size > this.minalign) this.minalign = size;
    const pad = (~(this.offset() + extra) + 1) & (size - 1);
    const needed = pad + size + extra;
    if (this.offset() + needed > ANSWER_BYTES_MAX) {
      this.overflowed = true;
    }
    if (this.space < needed) this.grow(this.offset() + needed);
    this.space -= pad;
    memory.fill(this.buf + <usize>this.space, 0, <usize>pad);
  }

  @inline private at(): usize {
    return this.buf + <usize>this.space;
  }

  private putI32(v: i32): void {
    this.space -= 4;
    store<i32>(this.at(), v);
  }

  private putU16(v: u16): void {
    this.space -= 2;
    store<u16>(this.at(), v);
  }

  /** A string from `len` UTF-8 bytes at `ptr`; its offset. */
  createBytes(ptr: usize, len: i32): i32 {
    this.prep(4, len + 1);
    this.space -= 1;
    store<u8>(this.at(), 0);
    this.space -= len;
    memory.copy(this.at(), ptr, <usize>len);
    this.putI32(len);
    return this.offset();
  }

  /** A string; its offset. A string literal (in the module's static data,
   * below the heap) is encoded to UTF-8 once and copied from then on; any
   * other is encoded each time. */
  createString(s: string): i32 {
    const at = changetype<usize>(s);
    if (at < __heap_base) {
      let bytes = literals.has(at) ? literals.get(at) : null;
      if (bytes == null) {
        bytes = String.UTF8.encode(s);
        literals.set(at, bytes);
      }
      return this.createBytes(changetype<usize>(bytes), bytes.byteLength);
    }
    const len = String.UTF8.byteLength(s);
    this.prep(4, len + 1);
    this.space -= 1;
    store<u8>(this.at(), 0);
    this.space -= len;
    String.UTF8.encodeUnsafe(at, s.length, this.at());
    this.putI32(len);
    return this.offset();
  }

  /** A vector of the offsets in `items[0..n]`; its offset. */
  createOffsetVector(items: StaticArray<i32>, n: i32): i32 {
    this.prep(4, 4 * n);
    for (let i = n - 1; i >= 0; i--) {
      this.prep(4, 0);
      this.putI32(this.offset() + 4 - items[i]);
    }
    this.putI32(n);
    return this.offset();
  }

  /** A vector of `n` i32 values; its offset. */
  createI32Vector(items: StaticArray<i32>, n: i32): i32 {
    this.prep(4, 4 * n);
    for (let i = n - 1; i >= 0; i--) this.putI32(items[i]);
    this.putI32(n);
    return this.offset();
  }

  startTable(fields: i32): void {
    assert(fields <= FIELDS_MAX);
    for (let i = 0; i < fields; i++) this.fields[i] = 0;
    this.fieldCount = fields;
    this.tableStart = this.offset();
  }

  addI32(slot: i32, v: i32): void {
    this.prep(4, 0);
    this.putI32(v);
    this.fields[slot] = this.offset();
  }

  addF64(slot: i32, v: f64): void {
    this.prep(8, 0);
    this.space -= 8;
    store<f64>(this.at(), v);
    this.fields[slot] = this.offset();
  }

  addOffset(slot: i32, target: i32): void {
    this.prep(4, 0);
    this.putI32(this.offset() + 4 - target);
    this.fields[slot] = this.offset();
  }

  /** Ends the table: its vtable, written just before it; its offset. */
  endTable(): i32 {
    this.prep(4, 0);
    this.putI32(0); // the soffset to the vtable, patched below
    const table = this.offset();
    let last = this.fieldCount;
    while (last > 0 && this.fields[last - 1] == 0) last--;
    // Room for the vtable (u16s: no alignment beyond the table's).
    const vtableBytes = (last + 2) * 2;
    if (this.space < vtableBytes) this.grow(this.offset() + vtableBytes);
    if (this.offset() + vtableBytes > ANSWER_BYTES_MAX) this.overflowed = true;
    for (let i = last - 1; i >= 0; i--) {
      const at = this.fields[i];
      this.putU16(at ? <u16>(table - at) : 0);
    }
    this.putU16(<u16>(table - this.tableStart));
    this.putU16(<u16>((last + 2) * 2));
    const vtable = this.offset();
    // The table points back to its vtable: table - vtable, as positions
    // from the buffer's end run the other way.
    store<i32>(this.buf + <usize>(this.cap - table), vtable - table);
    return table;
  }

  /** Finishes with `root` as the root table: where the answer starts and
   * its length. */
  finish(root: i32): void {
    this.prep(this.minalign, 4);
    this.putI32(this.offset() + 4 - root);
  }

  /** The finished answer: its address. */
  @inline start(): usize {
    return this.at();
  }

  /** The finished answer: its length. */
  @inline length(): i32 {
    return this.offset();
  }
}
