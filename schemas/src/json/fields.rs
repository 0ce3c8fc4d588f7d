//! How each kind of field moves between serde structs and flatbuffers.
//!
//! [`Field`] is implemented once per field *shape* (optional scalar, string,
//! vector, sub-table, `ext`), so the per-object declarations in
//! [`super::tables`] need no code of their own.

use std::borrow::Cow;
use std::fmt;

use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Vector, WIPOffset};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{EXT_DEPTH_MAX, JsonError};

/// A JSON string: borrowed from the input unless it had escapes to undo.
#[derive(Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// An `ext` object: the raw JSON text, kept verbatim, nested at most
/// [`EXT_DEPTH_MAX`] deep.
#[derive(Clone, Copy, Debug)]
pub struct Ext<'a>(pub &'a RawValue);

impl Serialize for Ext<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Ext<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        if nesting_depth(raw.get().as_bytes()) > EXT_DEPTH_MAX {
            return Err(de::Error::custom(format_args!(
                "ext nests deeper than {EXT_DEPTH_MAX} levels"
            )));
        }
        Ok(Ext(raw))
    }
}

/// Deepest bracket nesting of valid JSON text (brackets inside strings do
/// not count).
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut depth_max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                depth_max = depth_max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth_max
}

/// A reusable flatbuffer builder plus the scratch stack for vectors of
/// offsets (children must be finished before their parent vector starts, so
/// their offsets wait here; nesting makes it a stack, reused across calls).
pub(super) struct Builder<'b> {
    pub(super) fbb: FlatBufferBuilder<'b>,
    offsets: Vec<u32>,
    /// Tables created since the last reset: what the verifier's
    /// `max_tables` counts, since a built buffer shares no tables.
    tables: usize,
}

impl<'b> Builder<'b> {
    pub(super) fn new(fbb: FlatBufferBuilder<'b>) -> Self {
        Self {
            fbb,
            offsets: Vec::new(),
            tables: 0,
        }
    }

    pub(super) fn reset(&mut self) {
        self.fbb.reset();
        self.offsets.clear();
        self.tables = 0;
    }

    /// Counts one table; every table is created through here (the
    /// `tables!` macro's `build`).
    pub(super) fn table_created(&mut self) {
        self.tables += 1;
    }

    pub(super) fn tables(&self) -> usize {
        self.tables
    }

    /// Builds a vector of offsets to children that `build` creates.
    pub(super) fn offset_vector<T, X>(
        &mut self,
        items: &[T],
        mut build: impl FnMut(&T, &mut Self) -> WIPOffset<X>,
    ) -> WIPOffset<Vector<'b, ForwardsUOffset<X>>> {
        let start = self.offsets.len();
        for item in items {
            let offset = build(item, self);
            self.offsets.push(offset.value());
        }
        self.fbb.start_vector::<WIPOffset<X>>(items.len());
        // Vectors are written back to front.
        for &offset in self.offsets[start..].iter().rev() {
            self.fbb.push(WIPOffset::<X>::new(offset));
        }
        let vector = self.fbb.end_vector::<WIPOffset<X>>(items.len());
        self.offsets.truncate(start);
        WIPOffset::new(vector.value())
    }
}

/// A field of a mirror struct: how to build it into a flatbuffer (`Built`
/// is the type of the generated `*Args` field) and read it back (`Fb` is
/// what the generated accessor returns).
pub(super) trait Field<'a>: Sized {
    type Built<'b>;
    type Fb;
    /// Deepest chain of tables below (and including) this field, as the
    /// verifier's `max_depth` counts it: tables only, vectors are free.
    const TABLE_DEPTH: usize = 0;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b>;
    fn read(fb: Self::Fb) -> Result<Self, JsonError>;
    /// Absent fields are left out of JSON output.
    fn is_absent(&self) -> bool {
        false
    }
}

/// An element of a vector field.
pub(super) trait Elem<'a>: Sized {
    type FbElem<'x>: Follow<'x> + 'x;
    /// As [`Field::TABLE_DEPTH`], for one element.
    const TABLE_DEPTH: usize = 0;
    fn build_vector<'b>(
        items: &[Self],
        b: &mut Builder<'b>,
    ) -> WIPOffset<Vector<'b, Self::FbElem<'b>>>;
    fn read_elem(fb: <Self::FbElem<'a> as Follow<'a>>::Inner) -> Result<Self, JsonError>;
}

macro_rules! scalar_fields {
    ($($t:ty),*) => {$(
        impl<'a> Field<'a> for Option<$t> {
            type Built<'b> = Option<$t>;
            type Fb = Option<$t>;
            fn build<'b>(&self, _: &mut Builder<'b>) -> Option<$t> {
                *self
            }
            fn read(fb: Option<$t>) -> Result<Self, JsonError> {
                Ok(fb)
            }
            fn is_absent(&self) -> bool {
                self.is_none()
            }
        }

        impl<'a> Elem<'a> for $t {
            type FbElem<'x> = $t;
            fn build_vector<'b>(items: &[Self], b: &mut Builder<'b>) -> WIPOffset<Vector<'b, $t>> {
                b.fbb.create_vector(items)
            }
            fn read_elem(fb: $t) -> Result<Self, JsonError> {
                Ok(fb)
            }
        }
    )*};
}
scalar_fields!(i32, f64);

/// A required decimal (`Bid.price`): a plain scalar in the flatbuffer.
impl<'a> Field<'a> for f64 {
    type Built<'b> = f64;
    type Fb = f64;
    fn build<'b>(&self, _: &mut Builder<'b>) -> f64 {
        *self
    }
    fn read(fb: f64) -> Result<Self, JsonError> {
        Ok(fb)
    }
}

impl<'a> Field<'a> for Str<'a> {
    type Built<'b> = Option<WIPOffset<&'b str>>;
    type Fb = &'a str;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
        Some(b.fbb.create_string(&self.0))
    }
    fn read(fb: &'a str) -> Result<Self, JsonError> {
        Ok(Str(Cow::Borrowed(fb)))
    }
}

impl<'a> Field<'a> for Option<Str<'a>> {
    type Built<'b> = Option<WIPOffset<&'b str>>;
    type Fb = Option<&'a str>;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
        self.as_ref().map(|s| b.fbb.create_string(&s.0))
    }
    fn read(fb: Option<&'a str>) -> Result<Self, JsonError> {
        Ok(fb.map(|s| Str(Cow::Borrowed(s))))
    }
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl<'a> Elem<'a> for Str<'a> {
    type FbElem<'x> = ForwardsUOffset<&'x str>;
    fn build_vector<'b>(
        items: &[Self],
        b: &mut Builder<'b>,
    ) -> WIPOffset<Vector<'b, Self::FbElem<'b>>> {
        b.offset_vector(items, |s, b| b.fbb.create_string(&s.0))
    }
    fn read_elem(fb: &'a str) -> Result<Self, JsonError> {
        Ok(Str(Cow::Borrowed(fb)))
    }
}

impl<'a> Field<'a> for Option<Ext<'a>> {
    type Built<'b> = Option<WIPOffset<&'b str>>;
    type Fb = Option<&'a str>;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
        self.map(|ext| b.fbb.create_string(ext.0.get()))
    }
    fn read(fb: Option<&'a str>) -> Result<Self, JsonError> {
        // A flatbuffer may come from anyone: its ext must be JSON before it
        // is spliced verbatim into JSON output.
        fb.map(|text| {
            serde_json::from_str::<&RawValue>(text)
                .map(Ext)
                .map_err(JsonError::BadExt)
        })
        .transpose()
    }
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

fn read_vector<'a, E: Elem<'a>>(fb: Vector<'a, E::FbElem<'a>>) -> Result<Vec<E>, JsonError> {
    fb.iter().map(E::read_elem).collect()
}

impl<'a, E: Elem<'a>> Field<'a> for Vec<E> {
    type Built<'b> = Option<WIPOffset<Vector<'b, E::FbElem<'b>>>>;
    type Fb = Vector<'a, E::FbElem<'a>>;
    const TABLE_DEPTH: usize = E::TABLE_DEPTH;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
        Some(E::build_vector(self, b))
    }
    fn read(fb: Self::Fb) -> Result<Self, JsonError> {
        read_vector(fb)
    }
}

impl<'a, E: Elem<'a>> Field<'a> for Option<Vec<E>> {
    type Built<'b> = Option<WIPOffset<Vector<'b, E::FbElem<'b>>>>;
    type Fb = Option<Vector<'a, E::FbElem<'a>>>;
    const TABLE_DEPTH: usize = E::TABLE_DEPTH;
    fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
        self.as_ref().map(|items| E::build_vector(items, b))
    }
    fn read(fb: Self::Fb) -> Result<Self, JsonError> {
        fb.map(read_vector).transpose()
    }
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

/// Implements [`Field`] for an optional sub-object and [`Elem`] for a
/// vector of them; used by the `tables!` declarations.
macro_rules! table_field {
    ($name:ident) => {
        impl<'a> Field<'a> for Option<$name<'a>> {
            type Built<'b> = Option<::flatbuffers::WIPOffset<fb::$name<'b>>>;
            type Fb = Option<fb::$name<'a>>;
            const TABLE_DEPTH: usize = <$name<'a> as Table<'a>>::TABLE_DEPTH;
            fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
                self.as_ref().map(|t| t.build(b))
            }
            fn read(fb: Self::Fb) -> Result<Self, JsonError> {
                fb.map($name::read).transpose()
            }
            fn is_absent(&self) -> bool {
                self.is_none()
            }
        }

        /// Large sub-objects are boxed: serde builds structs by value, and
        /// moving kilobytes of inline `Option`s costs more than the box.
        impl<'a> Field<'a> for Option<Box<$name<'a>>> {
            type Built<'b> = Option<::flatbuffers::WIPOffset<fb::$name<'b>>>;
            type Fb = Option<fb::$name<'a>>;
            const TABLE_DEPTH: usize = <$name<'a> as Table<'a>>::TABLE_DEPTH;
            fn build<'b>(&self, b: &mut Builder<'b>) -> Self::Built<'b> {
                self.as_ref().map(|t| t.build(b))
            }
            fn read(fb: Self::Fb) -> Result<Self, JsonError> {
                fb.map(|t| $name::read(t).map(Box::new)).transpose()
            }
            fn is_absent(&self) -> bool {
                self.is_none()
            }
        }

        impl<'a> Elem<'a> for $name<'a> {
            type FbElem<'x> = ::flatbuffers::ForwardsUOffset<fb::$name<'x>>;
            const TABLE_DEPTH: usize = <$name<'a> as Table<'a>>::TABLE_DEPTH;
            fn build_vector<'b>(
                items: &[Self],
                b: &mut Builder<'b>,
            ) -> ::flatbuffers::WIPOffset<::flatbuffers::Vector<'b, Self::FbElem<'b>>> {
                b.offset_vector(items, |t, b| t.build(b))
            }
            fn read_elem(fb: fb::$name<'a>) -> Result<Self, JsonError> {
                $name::read(fb)
            }
        }
    };
}
pub(super) use table_field;
