// Reading a flatbuffer in place, in linear memory: the generic part of the
// generated readers (`../generated/openrtb.ts`), which hold the slots.
// The host verified the request before the call (ABI.md), so reads follow
// offsets without checking them again, as the Rust SDK does.

/** A string in the request: its UTF-8 bytes where they lie, not copied. */
@final
export class Str {
  constructor(public ptr: usize, public len: i32) {}

  /** Whether the bytes equal `s` (as UTF-8), without allocating: ASCII
   * is compared unit by unit, anything else through its encoding. */
  eq(s: string): bool {
    const n = s.length;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (<u32>s.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      if (n != this.len) return false;
      for (let i = 0; i < n; i++) {
        if (<u32>load<u8>(this.ptr + <usize>i) != <u32>s.charCodeAt(i)) return false;
      }
      return true;
    }
    const bytes = String.UTF8.encode(s);
    return bytes.byteLength == this.len
      && memory.compare(this.ptr, changetype<usize>(bytes), <usize>this.len) == 0;
  }

  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.len);
  }
}

/** A table: the position of its root in memory. */
export class Table {
  constructor(public ptr: usize) {}

  /** The field at vtable slot `vo`, relative to the table; 0: absent. */
  @inline
  protected field(vo: u32): u32 {
    const vtable = this.ptr - <usize>load<i32>(this.ptr);
    return vo < <u32>load<u16>(vtable) ? <u32>load<u16>(vtable + vo) : 0;
  }

  protected has(vo: u32): bool {
    return this.field(vo) != 0;
  }

  protected i32(vo: u32, absent: i32): i32 {
    const o = this.field(vo);
    return o ? load<i32>(this.ptr + o) : absent;
  }

  protected f64(vo: u32, absent: f64): f64 {
    const o = this.field(vo);
    return o ? load<f64>(this.ptr + o) : absent;
  }

  /** Where the offset stored at `at` points. */
  @inline
  private static follow(at: usize): usize {
    return at + <usize>load<u32>(at);
  }

  protected str(vo: u32): Str | null {
    const o = this.field(vo);
    if (!o) return null;
    const s = Table.follow(this.ptr + o);
    return new Str(s + 4, load<i32>(s));
  }

  protected table(vo: u32): usize {
    const o = this.field(vo);
    return o ? Table.follow(this.ptr + o) : 0;
  }

  /** The vector at `vo`: its first element (0: absent). */
  private vector(vo: u32): usize {
    const o = this.field(vo);
    return o ? Table.follow(this.ptr + o) : 0;
  }

  protected vectorLength(vo: u32): i32 {
    const v = this.vector(vo);
    return v ? load<i32>(v) : 0;
  }

  protected tableAt(vo: u32, i: i32): usize {
    return Table.follow(this.vector(vo) + 4 + 4 * <usize>i);
  }

  protected strAt(vo: u32, i: i32): Str {
    const s = Table.follow(this.vector(vo) + 4 + 4 * <usize>i);
    return new Str(s + 4, load<i32>(s));
  }

  protected i32At(vo: u32, i: i32): i32 {
    return load<i32>(this.vector(vo) + 4 + 4 * <usize>i);
  }

  protected f64At(vo: u32, i: i32): f64 {
    return load<f64>(this.vector(vo) + 4 + 8 * <usize>i);
  }
}
