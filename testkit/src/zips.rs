//! Zip archives made in test code, good and hostile, so no binary fixture is checked in.
//!
//! [`RawZip`] writes the zip format by hand (local headers, central directory, end
//! record) because hostile archives need what a well-behaved writer refuses to produce:
//! names with `..`, absolute paths, NUL or control characters, duplicate names, symlink
//! and device entries, the encryption flag, sizes that lie. [`hostile`] lists one archive
//! per rejection the daemon's unpacker must make, with the stable code it must answer.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::DeflateEncoder;

/// How an entry's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// As is.
    Stored,
    /// Deflated.
    Deflated,
}

/// One entry of a [`RawZip`].
#[derive(Clone, Debug)]
pub struct Entry {
    /// The stored name, byte for byte.
    pub name: Vec<u8>,
    /// The uncompressed content.
    pub data: Vec<u8>,
    /// Unix mode (type and permission bits), stored in the external attributes.
    pub mode: u32,
    /// How the data is stored.
    pub method: Method,
    /// General purpose flags (bit 0: encrypted).
    pub flags: u16,
    /// The uncompressed size the headers claim, when it should lie.
    pub declared_size: Option<u32>,
}

impl Entry {
    /// A regular file (0644), deflated.
    pub fn file(name: impl AsRef<[u8]>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            data: data.into(),
            mode: 0o100_644,
            method: Method::Deflated,
            flags: 0,
            declared_size: None,
        }
    }

    /// A directory entry (`name` should end with `/`).
    pub fn dir(name: impl AsRef<[u8]>) -> Self {
        Self {
            mode: 0o040_755,
            method: Method::Stored,
            ..Self::file(name, Vec::new())
        }
    }

    /// A symlink to `target`.
    pub fn symlink(name: impl AsRef<[u8]>, target: &str) -> Self {
        Self {
            mode: 0o120_777,
            method: Method::Stored,
            ..Self::file(name, target.as_bytes().to_vec())
        }
    }

    /// Stored instead of deflated.
    pub fn stored(mut self) -> Self {
        self.method = Method::Stored;
        self
    }
}

/// A zip archive built entry by entry; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct RawZip {
    /// The entries, in order.
    pub entries: Vec<Entry>,
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl RawZip {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    pub fn with(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// The archive's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for e in &self.entries {
            let packed = match e.method {
                Method::Stored => e.data.clone(),
                Method::Deflated => {
                    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
                    let _ = enc.write_all(&e.data);
                    enc.finish().unwrap_or_default()
                }
            };
            let method: u16 = match e.method {
                Method::Stored => 0,
                Method::Deflated => 8,
            };
            let crc = crc32fast::hash(&e.data);
            let size = e.declared_size.unwrap_or(len32(e.data.len()));
            let offset = len32(out.len());
            // Local file header.
            u32le(&mut out, 0x0403_4b50);
            u16le(&mut out, 20);
            u16le(&mut out, e.flags);
            u16le(&mut out, method);
            u16le(&mut out, 0);
            u16le(&mut out, 0x21);
            u32le(&mut out, crc);
            u32le(&mut out, len32(packed.len()));
            u32le(&mut out, size);
            u16le(&mut out, len16(e.name.len()));
            u16le(&mut out, 0);
            out.extend_from_slice(&e.name);
            out.extend_from_slice(&packed);
            // Central directory header.
            u32le(&mut central, 0x0201_4b50);
            u16le(&mut central, (3 << 8) | 20);
            u16le(&mut central, 20);
            u16le(&mut central, e.flags);
            u16le(&mut central, method);
            u16le(&mut central, 0);
            u16le(&mut central, 0x21);
            u32le(&mut central, crc);
            u32le(&mut central, len32(packed.len()));
            u32le(&mut central, size);
            u16le(&mut central, len16(e.name.len()));
            u16le(&mut central, 0);
            u16le(&mut central, 0);
            u16le(&mut central, 0);
            u16le(&mut central, 0);
            u32le(&mut central, e.mode << 16);
            u32le(&mut central, offset);
            central.extend_from_slice(&e.name);
        }
        let cd_offset = len32(out.len());
        out.extend_from_slice(&central);
        u32le(&mut out, 0x0605_4b50);
        u16le(&mut out, 0);
        u16le(&mut out, 0);
        u16le(&mut out, len16(self.entries.len()));
        u16le(&mut out, len16(self.entries.len()));
        u32le(&mut out, len32(central.len()));
        u32le(&mut out, cd_offset);
        u16le(&mut out, 0);
        out
    }
}

/// Bytes that deflate hardly at all (a simple xorshift stream), for archives whose size
/// must not shrink.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small good archive: `README.md`, `src/main.rs` and an empty `docs/`.
pub fn small_project() -> Vec<u8> {
    RawZip::new()
        .with(Entry::file("README.md", "# demo\n"))
        .with(Entry::dir("src/"))
        .with(Entry::file("src/main.rs", "fn main() {}\n"))
        .with(Entry::dir("docs/"))
        .build()
}

/// One hostile archive: what it tries, its bytes, and the code it must be refused with.
pub struct Hostile {
    /// What it tries.
    pub what: &'static str,
    /// The archive.
    pub zip: Vec<u8>,
    /// The stable error code.
    pub code: &'static str,
}

/// The hostile archives for a daemon whose caps are `max_bytes` (at least 2 MiB),
/// `max_files` and a ratio cap of 100. `outside` is a directory outside the workspace
/// root that nothing may be written into.
pub fn hostile(outside: &Path, max_bytes: usize, max_files: usize) -> Vec<Hostile> {
    let out = outside.display().to_string();
    let good = small_project();
    let mut corrupt = RawZip::new()
        .with(Entry::file("a.txt", noise(4096, 7)).stored())
        .build();
    // Flip data bytes: the CRC no longer matches.
    for b in &mut corrupt[40..60] {
        *b ^= 0xff;
    }
    let mut many = RawZip::new();
    for i in 0..=max_files {
        many = many.with(Entry::file(format!("f{i}.txt"), "x"));
    }
    let mut encrypted = Entry::file("secret.txt", "hidden").stored();
    encrypted.flags = 1;
    let mut liar = Entry::file("bomb.bin", vec![0u8; 3 * 1024 * 1024]);
    liar.declared_size = Some(10);
    let mut device = Entry::file("dev", Vec::new()).stored();
    device.mode = 0o020_644;
    let mut fifo = Entry::file("fifo", Vec::new()).stored();
    fifo.mode = 0o010_644;
    let hostile = |what, zip: RawZip, code| Hostile {
        what,
        zip: zip.build(),
        code,
    };
    vec![
        hostile(
            "a `..` path",
            RawZip::new()
                .with(Entry::file("ok.txt", "fine"))
                .with(Entry::file("../escaped.txt", "pwned")),
            "ZIP_PATH_TRAVERSAL",
        ),
        hostile(
            "`..` in the middle",
            RawZip::new().with(Entry::file("a/../../escaped.txt", "pwned")),
            "ZIP_PATH_TRAVERSAL",
        ),
        hostile(
            "an absolute path",
            RawZip::new().with(Entry::file(format!("{out}/absolute.txt"), "pwned")),
            "ZIP_ABSOLUTE_PATH",
        ),
        hostile(
            "a symlink",
            RawZip::new().with(Entry::symlink("link", "/etc/passwd")),
            "ZIP_SYMLINK",
        ),
        hostile(
            "a write through a symlink",
            RawZip::new()
                .with(Entry::symlink("d", &out))
                .with(Entry::file("d/through.txt", "pwned")),
            "ZIP_SYMLINK",
        ),
        hostile("a device", RawZip::new().with(device), "ZIP_SPECIAL_FILE"),
        hostile("a FIFO", RawZip::new().with(fifo), "ZIP_SPECIAL_FILE"),
        hostile(
            "a NUL in a name",
            RawZip::new().with(Entry::file(b"a\0b.txt", "x")),
            "ZIP_BAD_NAME",
        ),
        hostile(
            "a control character in a name",
            RawZip::new().with(Entry::file(b"bell\x07.txt", "x")),
            "ZIP_BAD_NAME",
        ),
        hostile(
            "a duplicate name",
            RawZip::new()
                .with(Entry::file("twice.txt", "one"))
                .with(Entry::file("twice.txt", "two")),
            "ZIP_DUPLICATE",
        ),
        hostile(
            "more than the size cap unpacked",
            RawZip::new().with(Entry::file("big.txt", hexish(max_bytes + 1024))),
            "ZIP_TOO_LARGE",
        ),
        hostile(
            "a zip bomb (ratio)",
            RawZip::new().with(Entry::file("zeros.bin", vec![0u8; 2 * 1024 * 1024])),
            "ZIP_RATIO",
        ),
        hostile(
            "a bomb that lies about its size",
            RawZip::new().with(liar),
            "ZIP_CORRUPT",
        ),
        hostile("too many entries", many, "ZIP_TOO_MANY_FILES"),
        hostile(
            "an encrypted entry",
            RawZip::new().with(encrypted),
            "ZIP_ENCRYPTED",
        ),
        Hostile {
            what: "a truncated archive",
            zip: good[..good.len() / 2].to_vec(),
            code: "ZIP_CORRUPT",
        },
        Hostile {
            what: "corrupt data",
            zip: corrupt,
            code: "ZIP_CORRUPT",
        },
        Hostile {
            what: "not a zip at all",
            zip: b"this is not an archive".to_vec(),
            code: "ZIP_CORRUPT",
        },
    ]
}

/// Text that deflates only about 2:1 (hex digits of noise), so a big entry stays under the
/// ratio cap.
fn hexish(len: usize) -> Vec<u8> {
    let digits = b"0123456789abcdef";
    noise(len, 11)
        .into_iter()
        .map(|b| digits[usize::from(b & 0x0f)])
        .collect()
}

/// An archive decoded from fuzz bytes, for the unpacker's properties: every entry is a
/// tag byte (kind, method, encryption, a lying size), a name made of pieces that matter to
/// the guard (`..`, `/`, NUL, `outside`, a long one, raw bytes) and a little content. The
/// last byte, when it is odd, flips one byte of the result so damaged archives are tried
/// too. Deterministic: the same bytes give the same archive.
pub fn from_fuzz(data: &[u8]) -> Vec<u8> {
    const PIECES: [&[u8]; 12] = [
        b"a",
        b"b/",
        b"../",
        b"/",
        b"outside/",
        b"canary",
        b"\0",
        b"\x01",
        b"./",
        b"..",
        b"c.txt",
        b"//",
    ];
    let mut zip = RawZip::new();
    let mut rest = data;
    while let [tag, npieces, len, tail @ ..] = rest {
        let mut name = Vec::new();
        let mut t = tail;
        for _ in 0..(npieces % 5) {
            let Some((&p, more)) = t.split_first() else {
                break;
            };
            t = more;
            if p >= 0xf0 {
                name.extend(std::iter::repeat_n(b'x', usize::from(p) * 2));
            } else if p >= 0xc0 {
                name.push(p);
            } else {
                name.extend_from_slice(PIECES[usize::from(p) % PIECES.len()]);
            }
        }
        let n = usize::from(*len).min(t.len());
        let (content, more) = t.split_at(n);
        rest = more;
        let mut e = Entry::file(name, content.to_vec());
        e.mode = match tag % 8 {
            0..=3 => 0o100_644,
            4 => 0o100_755,
            5 => 0o040_755,
            6 => 0o120_777,
            _ => 0o010_644,
        };
        if tag & 0x08 != 0 {
            e.method = Method::Stored;
        }
        if tag & 0x10 != 0 {
            e.flags = 1;
        }
        if tag & 0x20 != 0 {
            // A lie about the size, either way; `len` repeated makes big content cheap.
            e.declared_size = Some(u32::from(*len) / 3);
            e.data = e.data.repeat(usize::from(tag >> 6) * 50 + 1);
        }
        zip = zip.with(e);
    }
    let mut out = zip.build();
    if let Some(&last) = data.last()
        && last % 2 == 1
        && !out.is_empty()
    {
        let at = usize::from(last) * 7 % out.len();
        out[at] ^= 0x5a;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_crate_reads_a_built_archive() {
        let bytes = small_project();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
        assert_eq!(z.len(), 4);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut z.by_name("src/main.rs").expect("entry"), &mut s)
            .expect("read");
        assert_eq!(s, "fn main() {}\n");
        assert!(z.by_name("docs/").expect("dir").is_dir());
    }
}
