//! Graph files are UTF-8 text: find the first byte that says otherwise.

/// Why bytes are not a text file: the offending byte and what is wrong.
#[derive(Debug)]
pub(crate) struct NotText<'a> {
    /// The valid text before the bad byte, to count lines and columns in.
    pub prefix: &'a str,
    /// Offset of the first bad byte.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// The bytes as text, or where they stop being text.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, NotText<'_>> {
    let (valid, bad_utf8) = match std::str::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let up_to = e.valid_up_to();
            let prefix = bytes.get(..up_to).unwrap_or(&[]);
            (std::str::from_utf8(prefix).unwrap_or(""), Some(up_to))
        }
    };
    let control = valid
        .bytes()
        .position(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f);
    if let Some(offset) = control {
        let byte = bytes.get(offset).copied().unwrap_or(0);
        return Err(NotText {
            prefix: valid,
            offset,
            message: format!(
                "not a text file: control byte 0x{byte:02x}; graph files are UTF-8 TOML text"
            ),
        });
    }
    match bad_utf8 {
        None => Ok(valid),
        Some(offset) => {
            let byte = bytes.get(offset).copied().unwrap_or(0);
            Err(NotText {
                prefix: valid,
                offset,
                message: format!(
                    "not UTF-8 text: invalid byte 0x{byte:02x}; graph files are UTF-8 TOML text"
                ),
            })
        }
    }
}
