//! Modbus device profiles as data.
//!
//! A [`Profile`] is a static table of [`Point`]s: where a value lives
//! (function code, register address), how it is encoded (type, word order)
//! and how to turn it into engineering units (scale, offset, unit). There is
//! no transport here: a Modbus source elsewhere reads the registers (using
//! [`coalesce`] to batch them into few requests) and calls [`decode`].
//!
//! Addresses are the 0-based protocol addresses sent on the wire
//! (register "30001" of a manual is address 0).
//!
//! ```
//! use tandem_firmware::modbus::{coalesce, decode, profiles::EASTRON_SDM630};
//!
//! // Plan the reads once, when the profile is loaded.
//! let first = coalesce(EASTRON_SDM630.points, 0).next();
//! let request = first.expect("the SDM630 table is not empty");
//! assert_eq!((request.start, request.count), (0x0000, 18));
//!
//! // Decode a point out of the response.
//! let mut response = [0u16; 18];
//! response[0] = 0x4366; // 230.0 V as float32, high word first
//! let voltage = EASTRON_SDM630.point("voltage_l1").expect("known point");
//! let words = request.slice(voltage, &response).expect("covered");
//! assert_eq!(decode(voltage, words), Ok(230.0));
//! ```

mod coalesce;
pub mod profiles;

pub use coalesce::{coalesce, Coalesce, ReadRequest, MAX_REGISTERS_PER_READ};

/// The read function a point is fetched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionCode {
    /// 0x03 Read Holding Registers
    ReadHolding = 3,
    /// 0x04 Read Input Registers
    ReadInput = 4,
}

/// Encoding of a point's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// one register, unsigned
    U16,
    /// one register, two's complement
    I16,
    /// two registers, unsigned
    U32,
    /// two registers, two's complement
    I32,
    /// two registers, IEEE 754 single precision
    F32,
}

impl ValueType {
    /// Number of 16-bit registers the value occupies.
    pub const fn words(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        }
    }
}

/// Order of the two registers of a 32-bit value (bytes within a register
/// are always big-endian, as Modbus sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// high word at the lower address ("big-endian", ABCD)
    HighFirst,
    /// low word at the lower address ("word-swapped", CDAB)
    LowFirst,
}

/// One value of a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// name, used as the channel suffix (`snake_case`)
    pub name: &'static str,
    /// read function
    pub function: FunctionCode,
    /// 0-based register address
    pub address: u16,
    /// encoding
    pub ty: ValueType,
    /// order of the registers of a 32-bit value
    pub word_order: WordOrder,
    /// value = raw * scale + offset
    pub scale: f64,
    /// value = raw * scale + offset
    pub offset: f64,
    /// unit after scaling ("V", "kWh", "degC", ..; "" for none)
    pub unit: &'static str,
}

impl Point {
    /// A point with scale 1, offset 0 and high word first.
    pub const fn new(
        name: &'static str,
        function: FunctionCode,
        address: u16,
        ty: ValueType,
        unit: &'static str,
    ) -> Self {
        Self {
            name,
            function,
            address,
            ty,
            word_order: WordOrder::HighFirst,
            scale: 1.0,
            offset: 0.0,
            unit,
        }
    }

    /// The same point with another scale.
    pub const fn scaled(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// The same point with another offset (added after scaling).
    pub const fn offset(mut self, offset: f64) -> Self {
        self.offset = offset;
        self
    }

    /// The same point with the low word first.
    pub const fn low_word_first(mut self) -> Self {
        self.word_order = WordOrder::LowFirst;
        self
    }

    /// Number of registers the point occupies.
    pub const fn words(&self) -> u16 {
        self.ty.words()
    }
}

/// A device's table of points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// profile name, e.g. "eastron-sdm630"
    pub name: &'static str,
    /// the public register map the table was taken from
    pub source: &'static str,
    /// the points
    pub points: &'static [Point],
}

impl Profile {
    /// The point called `name`.
    pub fn point(&self, name: &str) -> Option<&'static Point> {
        self.points.iter().find(|p| p.name == name)
    }
}

/// Why registers could not be decoded into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The number of registers given is not the number the type needs.
    Length {
        /// registers the point's type needs
        expected: u16,
        /// registers given
        got: usize,
    },
    /// The value is NaN or infinite (a float register marked "no value").
    NotFinite,
}

/// Decodes the registers of `point` (exactly `point.words()` of them) into
/// `raw * scale + offset`. Never panics.
pub fn decode(point: &Point, words: &[u16]) -> Result<f64, DecodeError> {
    let expected = point.words();
    let (w0, w1) = match (words, expected) {
        ([a], 1) => (*a, 0),
        ([a, b], 2) => (*a, *b),
        _ => {
            return Err(DecodeError::Length {
                expected,
                got: words.len(),
            })
        }
    };
    let raw32 = match point.word_order {
        WordOrder::HighFirst => (u32::from(w0) << 16) | u32::from(w1),
        WordOrder::LowFirst => (u32::from(w1) << 16) | u32::from(w0),
    };
    let raw = match point.ty {
        ValueType::U16 => f64::from(w0),
        ValueType::I16 => f64::from(w0 as i16),
        ValueType::U32 => f64::from(raw32),
        ValueType::I32 => f64::from(raw32 as i32),
        ValueType::F32 => f64::from(f32::from_bits(raw32)),
    };
    let value = raw * point.scale + point.offset;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DecodeError::NotFinite)
    }
}
