//! SMBus framing over a plain I2C bus: Packet Error Code (PEC) and the
//! decoding of read-word and block-read responses.
//!
//! The PEC is a CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value
//! 0, no reflection, computed over every byte on the wire in the message:
//! for a read that is `address+W`, `command`, `address+R`, then the data
//! bytes. These functions are pure, so that the decoding of whatever a device
//! sends can be tested on arbitrary bytes.

/// Largest block an SMBus 2.0 block read may carry.
pub const MAX_BLOCK_LEN: usize = 32;

/// Updates a running PEC with `bytes`.
pub fn crc8_update(mut crc: u8, bytes: &[u8]) -> u8 {
    for &byte in bytes {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// PEC of a read transfer: `address+W, command, address+R, data..`.
///
/// `address` is the 7-bit address.
pub fn read_pec(address: u8, command: u8, data: &[u8]) -> u8 {
    let header = [address << 1, command, (address << 1) | 1];
    crc8_update(crc8_update(0, &header), data)
}

/// PEC of a write transfer: `address+W, command, data..`.
pub fn write_pec(address: u8, command: u8, data: &[u8]) -> u8 {
    crc8_update(crc8_update(0, &[address << 1, command]), data)
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs (a driver bug or a truncated read).
    Short {
        /// bytes needed
        needed: usize,
        /// bytes given
        got: usize,
    },
    /// The PEC byte does not match the one computed over the frame.
    Pec {
        /// PEC computed over address, command and data
        expected: u8,
        /// PEC byte the device sent
        received: u8,
    },
    /// A block read announced more than 32 bytes or more than was read.
    BlockLength(u8),
}

/// Decodes a read-word response (`lo, hi[, pec]`), little-endian.
///
/// With `pec` true, `raw` must hold 3 bytes and the third is checked.
pub fn decode_word(address: u8, command: u8, raw: &[u8], pec: bool) -> Result<u16, FrameError> {
    let needed = if pec { 3 } else { 2 };
    let (data, rest) = match raw.split_at_checked(2) {
        Some(parts) if raw.len() >= needed => parts,
        _ => {
            return Err(FrameError::Short {
                needed,
                got: raw.len(),
            })
        }
    };
    if pec {
        let received = rest.first().copied().unwrap_or_default();
        let expected = read_pec(address, command, data);
        if expected != received {
            return Err(FrameError::Pec { expected, received });
        }
    }
    let lo = data.first().copied().unwrap_or_default();
    let hi = data.get(1).copied().unwrap_or_default();
    Ok(u16::from_le_bytes([lo, hi]))
}

/// Decodes a block-read response (`count, data[count][, pec]`) and returns
/// the data bytes.
///
/// `raw` is what was read from the bus, usually `1 + 32 (+ 1)` bytes since a
/// plain I2C master cannot learn the count before it reads; bytes after the
/// block are ignored.
pub fn decode_block(address: u8, command: u8, raw: &[u8], pec: bool) -> Result<&[u8], FrameError> {
    let count = *raw.first().ok_or(FrameError::Short { needed: 1, got: 0 })?;
    let len = usize::from(count);
    if len > MAX_BLOCK_LEN {
        return Err(FrameError::BlockLength(count));
    }
    let needed = 1 + len + usize::from(pec);
    if raw.len() < needed {
        return Err(FrameError::BlockLength(count));
    }
    let framed = raw.get(..1 + len).ok_or(FrameError::BlockLength(count))?;
    if pec {
        let received = raw.get(1 + len).copied().unwrap_or_default();
        let expected = read_pec(address, command, framed);
        if expected != received {
            return Err(FrameError::Pec { expected, received });
        }
    }
    framed.get(1..).ok_or(FrameError::BlockLength(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voltage_vector_from_the_brief() {
        // address 0x0B, command 0x09 (Voltage), 12000 mV = 0x2EE0 -> E0 2E
        assert_eq!(read_pec(0x0B, 0x09, &[0xE0, 0x2E]), 0xE2);
        assert_eq!(
            decode_word(0x0B, 0x09, &[0xE0, 0x2E, 0xE2], true),
            Ok(12000)
        );
    }

    #[test]
    fn crc8_check_value() {
        // CRC-8/SMBUS check value over "123456789"
        assert_eq!(crc8_update(0, b"123456789"), 0xF4);
    }

    #[test]
    fn bad_pec_is_reported() {
        assert_eq!(
            decode_word(0x0B, 0x09, &[0xE0, 0x2E, 0x00], true),
            Err(FrameError::Pec {
                expected: 0xE2,
                received: 0x00
            })
        );
    }

    #[test]
    fn block_longer_than_read_is_rejected() {
        assert_eq!(
            decode_block(0x0B, 0x20, &[5, b'a', b'b'], false),
            Err(FrameError::BlockLength(5))
        );
        assert_eq!(
            decode_block(0x0B, 0x20, &[33], false),
            Err(FrameError::BlockLength(33))
        );
    }
}
