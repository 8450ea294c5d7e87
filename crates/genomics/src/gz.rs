//! Compressed reads entered in the middle. BGZF (htslib's blocked gzip, what
//! `bgzip` writes) is a series of gzip members of at most 64 KiB each, and its
//! `.gzi` index lists where each block starts in the file and in the
//! uncompressed data. With it, a byte range of the uncompressed reads maps to
//! the few blocks that hold it: a worker fetches and inflates only those, so
//! chunking works on the uncompressed bytes exactly as for a plain FASTQ.
//! Blocks and index are parsed by noodles-bgzf.
//!
//! Plain gzip has no such entry points (inflating a byte needs everything
//! before it): [`prepare`] rewrites it once as BGZF with its index, the way
//! the serverless original prepared its inputs before the first run.

use std::io::{BufReader, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use noodles_bgzf as bgzf;

use crate::Error;

/// Bytes a file's start must hold to tell its compression.
pub const SNIFF: u64 = 18;
/// Uncompressed bytes per block [`prepare`] writes (a BGZF block holds at most 65,280).
const BLOCK: usize = 60_000;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Blocked gzip: can be read from the middle with its index.
    Bgzf,
    /// Plain gzip: only from the start.
    Gzip,
}

/// The compression of a file that starts with `head` (its first [`SNIFF`] bytes).
pub fn compression(head: &[u8]) -> Compression {
    match head {
        // gzip magic, deflate, FEXTRA set, and the first extra subfield is BGZF's "BC".
        [0x1f, 0x8b, 8, flags, _, _, _, _, _, _, _, _, b'B', b'C', ..] if flags & 4 != 0 => Compression::Bgzf,
        [0x1f, 0x8b, ..] => Compression::Gzip,
        _ => Compression::None,
    }
}

/// The blocks of one BGZF file, from its `.gzi` index.
#[derive(Debug, Clone)]
pub struct Blocks {
    /// Where each block starts: (compressed, uncompressed) offsets, the first (0, 0).
    starts: Vec<(u64, u64)>,
    compressed: u64,
    uncompressed: u64,
}

impl Blocks {
    /// Reads the index `gzi` of the file `file` of `compressed` bytes;
    /// `read(range)` returns bytes of the compressed file (the last block is
    /// inflated to learn the uncompressed size).
    pub fn open(
        file: &str,
        gzi: &[u8],
        compressed: u64,
        read: &mut impl FnMut(Range<u64>) -> Result<Vec<u8>, Error>,
    ) -> Result<Blocks, Error> {
        let index = bgzf::gzi::io::Reader::new(gzi).read_index().map_err(|e| bad_index(file, e.to_string()))?;
        let mut starts = vec![(0, 0)];
        starts.extend_from_slice(index.as_ref());
        let ordered = starts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if !ordered || starts.last().is_some_and(|last| last.0 >= compressed) {
            return Err(bad_index(file, "its blocks are out of order or past the end of the file".into()));
        }
        let &(last_c, last_u) = starts.last().unwrap_or(&(0, 0));
        let tail = inflate(file, last_c, &read(last_c..compressed)?)?;
        Ok(Blocks { starts, compressed, uncompressed: last_u + tail.len() as u64 })
    }

    /// Bytes of the uncompressed data.
    pub fn size(&self) -> u64 {
        self.uncompressed
    }

    /// The uncompressed bytes of `range`, from the blocks that hold them.
    pub fn read(
        &self,
        file: &str,
        range: Range<u64>,
        read: &mut impl FnMut(Range<u64>) -> Result<Vec<u8>, Error>,
    ) -> Result<Vec<u8>, Error> {
        let end = range.end.min(self.uncompressed);
        if range.start >= end {
            return Ok(Vec::new());
        }
        let first = self.starts.partition_point(|s| s.1 <= range.start) - 1;
        let after = self.starts.partition_point(|s| s.1 < end);
        let (from, base) = self.starts[first];
        let to = self.starts.get(after).map_or(self.compressed, |s| s.0);
        let data = inflate(file, from, &read(from..to)?)?;
        let (a, b) = ((range.start - base) as usize, (end - base) as usize);
        data.get(a..b)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| bad_index(file, format!("the blocks from byte {from} hold fewer bytes than the index says")))
    }
}

/// The data of consecutive BGZF blocks (`bytes`, from byte `at` of `file`).
fn inflate(file: &str, at: u64, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    bgzf::io::Reader::new(bytes).read_to_end(&mut out).map_err(|e| Error::BadInput {
        file: file.to_string(),
        problem: format!("the BGZF blocks from byte {at} cannot be inflated ({e}); is the file complete?"),
    })?;
    Ok(out)
}

fn bad_index(file: &str, problem: String) -> Error {
    Error::BadInput {
        file: format!("{file}.gzi"),
        problem: format!("{problem}: it is not the index of {file}; remake it with `bgzip -r {file}`"),
    }
}

/// What [`prepare`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The BGZF file and its index (the same name with `.gzi` added).
    pub file: PathBuf,
    pub index: PathBuf,
    /// Uncompressed bytes.
    pub bytes: u64,
    pub blocks: usize,
}

/// Rewrites `src` (plain gzip, BGZF or uncompressed) as BGZF at `dst`, with
/// its index at `dst.gzi`; both appear only when complete.
pub fn prepare(src: &Path, dst: &Path) -> Result<Prepared, Error> {
    let mut head = [0u8; SNIFF as usize];
    let opened = std::fs::File::open(src).map_err(Error::io(src))?;
    let n = (&opened).take(SNIFF).read(&mut head).map_err(Error::io(src))?;
    let opened = std::fs::File::open(src).map_err(Error::io(src))?;
    let mut input: Box<dyn Read> = match compression(&head[..n]) {
        Compression::None => Box::new(BufReader::new(opened)),
        // (BGZF is a series of gzip members: this reads both.)
        Compression::Bgzf | Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(opened))),
    };
    let index_path = PathBuf::from(format!("{}.gzi", dst.display()));
    let (tmp, tmp_index) = (dst.with_extension("bgz.tmp"), index_path.with_extension("gzi.tmp"));
    let written = (|| {
        let out = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        let mut writer = bgzf::io::Writer::new(std::io::BufWriter::new(out));
        let (mut starts, mut total, mut buf) = (Vec::new(), 0u64, vec![0u8; BLOCK]);
        loop {
            let n = fill(&mut input, &mut buf).map_err(|e| Error::BadInput {
                file: src.display().to_string(),
                problem: format!("cannot be read after {total} uncompressed bytes ({e}); is it complete?"),
            })?;
            if n == 0 {
                break;
            }
            if total > 0 {
                starts.push((writer.position(), total));
            }
            // One block per write: the index knows where each starts.
            writer.write_all(&buf[..n]).and_then(|()| writer.flush()).map_err(Error::io(&tmp))?;
            total += n as u64;
        }
        let blocks = starts.len() + usize::from(total > 0);
        writer.finish().and_then(|mut w| w.flush()).map_err(Error::io(&tmp))?;
        let index = std::fs::File::create(&tmp_index).map_err(Error::io(&tmp_index))?;
        bgzf::gzi::io::Writer::new(index)
            .write_index(&bgzf::gzi::Index::from(starts))
            .map_err(Error::io(&tmp_index))?;
        std::fs::rename(&tmp, dst).map_err(Error::io(dst))?;
        std::fs::rename(&tmp_index, &index_path).map_err(Error::io(&index_path))?;
        Ok(Prepared { file: dst.to_path_buf(), index: index_path.clone(), bytes: total, blocks })
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&tmp_index);
    }
    written
}

/// Reads until `buf` is full or the input ends; how many bytes.
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `reads_1.fq.gz` → `reads_1.fq.bgz`; `reads.fq` → `reads.fq.bgz`.
pub fn prepared_name(src: &Path) -> PathBuf {
    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".bgz")).unwrap_or(&name);
    src.with_file_name(format!("{stem}.bgz"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fastq(records: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..records {
            out.extend_from_slice(format!("@read{i}\nACGTACGTAC\n+\nIIIIIIIIII\n").as_bytes());
        }
        out
    }

    #[test]
    fn a_prepared_file_is_read_from_the_middle_exactly() {
        let dir = std::env::temp_dir().join(format!("volley-gz-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = fastq(20_000); // 688,890 bytes: 12 blocks
        let gz = dir.join("r.fq.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap();
        assert_eq!(compression(&std::fs::read(&gz).unwrap()[..18]), Compression::Gzip);

        let prepared = prepare(&gz, &prepared_name(&gz)).unwrap();
        assert_eq!(prepared.file, dir.join("r.fq.bgz"));
        assert_eq!((prepared.bytes, prepared.blocks), (plain.len() as u64, plain.len().div_ceil(BLOCK)));
        let bytes = std::fs::read(&prepared.file).unwrap();
        assert_eq!(compression(&bytes[..18]), Compression::Bgzf);
        let mut read = |r: Range<u64>| Ok(bytes[r.start as usize..r.end as usize].to_vec());
        let blocks =
            Blocks::open("r.fq.bgz", &std::fs::read(&prepared.index).unwrap(), bytes.len() as u64, &mut read).unwrap();
        assert_eq!(blocks.size(), plain.len() as u64);
        let len = plain.len() as u64;
        for range in [0..10, 59_990..60_010, 123_456..654_321, len - 1000..len, 5..5] {
            let got = blocks.read("r.fq.bgz", range.clone(), &mut read).unwrap();
            assert_eq!(got, plain[range.start as usize..range.end as usize], "{range:?}");
        }
        // Another file's index is refused by name.
        let wrong = bgzf::gzi::Index::from(vec![(1 << 30, 60_000)]);
        let mut gzi = Vec::new();
        bgzf::gzi::io::Writer::new(&mut gzi).write_index(&wrong).unwrap();
        let err = Blocks::open("r.fq.bgz", &gzi, bytes.len() as u64, &mut read).unwrap_err().to_string();
        assert!(err.contains("r.fq.bgz.gzi") && err.contains("bgzip -r"), "{err}");
        // A truncated file says so.
        let cut = bytes.len() as u64 - 100;
        let mut read_cut = |r: Range<u64>| Ok(bytes[r.start as usize..r.end.min(cut) as usize].to_vec());
        let err = Blocks::open("r.fq.bgz", &std::fs::read(&prepared.index).unwrap(), cut, &mut read_cut).unwrap_err();
        assert!(err.to_string().contains("cannot be inflated"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
