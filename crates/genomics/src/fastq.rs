//! A FASTQ file cut into chunks by byte ranges, without a pass over the whole
//! file: chunk `i` of `n` owns the records that *start* in
//! `[size·i/n, size·(i+1)/n)`. A worker reads its range (and a little more, to
//! finish its last record), finds its first record start, and checks every
//! record it owns. Only uncompressed four-line FASTQ so far.
//!
//! Finding a record start mid-file: a line that starts with `@` may be a
//! quality line (219 of the lambda phage reads' quality lines do), so a
//! candidate counts only if noodles reads a whole record from it (line 3 starts
//! with `+`) and its sequence and quality have the same length. A quality line
//! taken for a header fails that: two lines later comes a sequence line, which
//! never starts with `+`.

use std::ops::Range;

use noodles_fastq as fastq;

use crate::Error;

/// Longest record accepted: short reads are a few hundred bytes.
pub const MAX_RECORD: usize = 1 << 20;
/// What a chunk reads past its end at first (more if its last record needs it).
const MARGIN: usize = 64 << 10;

/// Where chunk `index` of `count` begins looking for its first record.
pub fn chunk_start(size: u64, index: usize, count: usize) -> u64 {
    (size as u128 * index as u128 / count.max(1) as u128) as u64
}

/// One chunk's records: their bytes (whole records, as in the file), where
/// they start in the file, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub offset: u64,
    pub records: usize,
}

/// The records chunk `index` of `count` owns in a file of `size` bytes named
/// `file`; `read(range)` returns those bytes of the file (a ranged GET, a
/// positioned read).
pub fn read_chunk(
    file: &str,
    size: u64,
    index: usize,
    count: usize,
    mut read: impl FnMut(Range<u64>) -> Result<Vec<u8>, Error>,
) -> Result<Chunk, Error> {
    if count == 0 || index >= count {
        return Err(Error::Invalid(format!("chunk {index} of {count} does not exist")));
    }
    let (start, end) = (chunk_start(size, index, count), chunk_start(size, index + 1, count));
    if start == end {
        return Ok(Chunk { bytes: Vec::new(), offset: start, records: 0 });
    }
    // One byte before the start: whether `start` itself begins a line.
    let from = start.saturating_sub(1);
    let mut margin = MARGIN;
    loop {
        let to = (end + margin as u64).min(size);
        let window = read(from..to)?;
        let at_eof = to == size;
        match owned(file, &window, from, start, end, at_eof)? {
            Some(chunk) => return Ok(chunk),
            None if at_eof => return unreachable_eof(file, from),
            None if margin > MAX_RECORD * 4 => {
                return Err(bad(file, format!("no complete record within {} bytes after byte {end}", margin)));
            }
            None => margin *= 4,
        }
    }
}

/// Reaching the end of the file always settles a chunk; this says so if not.
fn unreachable_eof(file: &str, from: u64) -> Result<Chunk, Error> {
    Err(bad(file, format!("could not read the records after byte {from}")))
}

/// The records of `[start, end)` in `window` (file bytes from `from`), or
/// None when the window ends before its last record does.
fn owned(file: &str, window: &[u8], from: u64, start: u64, end: u64, at_eof: bool) -> Result<Option<Chunk>, Error> {
    let skip = (start - from) as usize;
    let first = if start == 0 {
        if window.first() != Some(&b'@') {
            return Err(bad(file, "does not start with a FASTQ record (its first byte is not '@')".into()));
        }
        0
    } else {
        match first_record(window, skip, at_eof) {
            Found::At(p) => p,
            Found::NeedMore => return Ok(None),
            // No record starts in this chunk's range: another chunk owns them all.
            Found::None => return Ok(Some(Chunk { bytes: Vec::new(), offset: start, records: 0 })),
        }
    };
    let mut p = first;
    let mut records = 0;
    while from + (p as u64) < end && p < window.len() {
        match record_at(file, window, p, from, at_eof)? {
            Some(len) => {
                p += len;
                records += 1;
            }
            None => return Ok(None),
        }
    }
    Ok(Some(Chunk { bytes: window[first..p].to_vec(), offset: from + first as u64, records }))
}

/// The records of the second file of a pair that go with a chunk of the
/// first: from the mate of its first record (named `first`), `records` of
/// them. `estimate` is where the mate likely is (the same fraction of the
/// file); the search widens from there until it finds the name.
pub fn read_mates(
    file: &str,
    size: u64,
    first: &[u8],
    records: usize,
    estimate: u64,
    mut read: impl FnMut(Range<u64>) -> Result<Vec<u8>, Error>,
) -> Result<Chunk, Error> {
    if records == 0 {
        return Ok(Chunk { bytes: Vec::new(), offset: estimate.min(size), records: 0 });
    }
    let wanted = mate_name(first);
    let mut reach = MARGIN as u64;
    let at = loop {
        let from = estimate.saturating_sub(reach);
        let to = (estimate + reach).min(size);
        let window = read(from..to)?;
        // From the window's second byte: the first is only there to say whether the second starts a line.
        let mut q = if from == 0 { 0 } else { 1 };
        let mut found = None;
        loop {
            let start = if from == 0 && q == 0 { Found::At(0) } else { first_record(&window, q, to == size) };
            let Found::At(p) = start else { break };
            let mut record = fastq::Record::default();
            if fastq::io::Reader::new(&window[p..]).read_record(&mut record).is_ok()
                && mate_name(record.name()) == wanted
            {
                found = Some(from + p as u64);
                break;
            }
            q = p + 1;
        }
        if let Some(at) = found {
            break at;
        }
        if from == 0 && to == size {
            return Err(bad(
                file,
                format!(
                    "holds no mate of {} (the two files of a pair must hold the same reads in the same order)",
                    String::from_utf8_lossy(first)
                ),
            ));
        }
        reach *= 4;
    };
    // The records from the mate on, reading further until there are enough.
    let mut span = (records * 512) as u64 + MARGIN as u64;
    loop {
        let to = (at + span).min(size);
        let window = read(at..to)?;
        let mut p = 0;
        let mut n = 0;
        while n < records && p < window.len() {
            match record_at(file, &window, p, at, to == size)? {
                Some(len) => {
                    p += len;
                    n += 1;
                }
                None => break,
            }
        }
        if n == records {
            return Ok(Chunk { bytes: window[..p].to_vec(), offset: at, records });
        }
        if to == size {
            return Err(bad(file, format!("ends after {n} of the {records} mates wanted from byte {at}")));
        }
        span *= 2;
    }
}

/// The records of a chunk and its mates, alternated (first, its mate, ...),
/// as minimap2 reads pairs from one stream.
pub fn interleave(first: &[u8], second: &[u8]) -> Result<Vec<u8>, Error> {
    let (mut a, mut b) = (fastq::io::Reader::new(first), fastq::io::Reader::new(second));
    let (mut ra, mut rb) = (fastq::Record::default(), fastq::Record::default());
    let mut out = Vec::with_capacity(first.len() + second.len());
    let mut writer = fastq::io::Writer::new(&mut out);
    let broken = |e: std::io::Error| Error::Invalid(format!("reading a chunk already checked: {e}"));
    loop {
        let (na, nb) = (a.read_record(&mut ra).map_err(broken)?, b.read_record(&mut rb).map_err(broken)?);
        match (na, nb) {
            (0, 0) => return Ok(out),
            (0, _) | (_, 0) => {
                return Err(Error::Invalid("the two files of the pair hold different numbers of reads".into()));
            }
            _ if mate_name(ra.name()) != mate_name(rb.name()) => {
                return Err(Error::Invalid(format!(
                    "{} and {} are not mates: the two files of a pair must hold the same reads in the same order",
                    String::from_utf8_lossy(ra.name()),
                    String::from_utf8_lossy(rb.name())
                )));
            }
            _ => {
                writer.write_record(&ra).map_err(broken)?;
                writer.write_record(&rb).map_err(broken)?;
            }
        }
    }
}

/// A read's name without the `/1` or `/2` that tells mates apart.
fn mate_name(name: &[u8]) -> &[u8] {
    match name {
        [head @ .., b'/', b'1' | b'2'] => head,
        _ => name,
    }
}

/// The name of the first record of `bytes` (a chunk's).
pub fn first_name(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut record = fastq::Record::default();
    fastq::io::Reader::new(bytes).read_record(&mut record).ok()?;
    Some(record.name().to_vec())
}

enum Found {
    At(usize),
    NeedMore,
    None,
}

/// The first record start at or after `skip` (a line start: the byte before
/// it is a newline).
fn first_record(window: &[u8], skip: usize, at_eof: bool) -> Found {
    let mut q = skip;
    loop {
        // The next line start at or after q.
        if q > 0 && window.get(q - 1) != Some(&b'\n') {
            match memchr(b'\n', &window[q.min(window.len())..]) {
                Some(i) => q += i + 1,
                None => return if at_eof { Found::None } else { Found::NeedMore },
            }
        }
        if q >= window.len() {
            return if at_eof { Found::None } else { Found::NeedMore };
        }
        if window[q] == b'@' {
            match complete_lines(&window[q..], at_eof) {
                false => return Found::NeedMore,
                true if parses(&window[q..]) => return Found::At(q),
                true => {}
            }
        }
        q += 1;
    }
}

/// Whether four whole lines (or the rest of the file) follow.
fn complete_lines(rest: &[u8], at_eof: bool) -> bool {
    at_eof || rest.iter().filter(|&&b| b == b'\n').take(4).count() == 4
}

/// Whether a whole, consistent record starts here.
fn parses(rest: &[u8]) -> bool {
    let mut record = fastq::Record::default();
    matches!(fastq::io::Reader::new(rest).read_record(&mut record), Ok(n) if n > 0)
        && record.sequence().len() == record.quality_scores().len()
}

/// The length of the record at `p`, checked; None if the window ends first.
fn record_at(file: &str, window: &[u8], p: usize, from: u64, at_eof: bool) -> Result<Option<usize>, Error> {
    let rest = &window[p..];
    if !complete_lines(rest, at_eof) {
        return Ok(None);
    }
    let at = from + p as u64;
    let mut record = fastq::Record::default();
    let n = fastq::io::Reader::new(rest)
        .read_record(&mut record)
        .map_err(|e| bad(file, format!("the record at byte {at} ({}): {e}", name_of(rest))))?;
    let (seq, qual) = (record.sequence().len(), record.quality_scores().len());
    if seq != qual {
        return Err(bad(
            file,
            format!("the record at byte {at} ({}): quality has {qual} characters, sequence {seq}", name_of(rest)),
        ));
    }
    if seq == 0 {
        return Err(bad(file, format!("the record at byte {at} ({}) has no sequence (truncated?)", name_of(rest))));
    }
    if n > MAX_RECORD {
        return Err(bad(file, format!("the record at byte {at} is {n} bytes; short reads are expected")));
    }
    Ok(Some(n))
}

/// The record's first line, for messages.
fn name_of(rest: &[u8]) -> String {
    let line = &rest[..memchr(b'\n', rest).unwrap_or(rest.len()).min(80)];
    String::from_utf8_lossy(line).into_owned()
}

fn memchr(byte: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == byte)
}

fn bad(file: &str, problem: String) -> Error {
    Error::BadInput { file: file.to_string(), problem }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Reads of varied lengths whose quality lines often start with '@' (the trap).
    fn sample(records: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        let mut writer = fastq::io::Writer::new(&mut out);
        for i in 0..records {
            let len = rng.random_range(1..180);
            let seq: Vec<u8> = (0..len).map(|_| b"ACGTN"[rng.random_range(0..5)]).collect();
            let qual: Vec<u8> =
                (0..len).map(|j| if j == 0 && i % 3 == 0 { b'@' } else { rng.random_range(b'!'..=b'J') }).collect();
            let name = format!("r{i}/1");
            writer.write_record(&fastq::Record::new(fastq::record::Definition::new(name, ""), seq, qual)).unwrap();
        }
        out
    }

    fn chunks(file: &[u8], count: usize) -> Vec<Chunk> {
        (0..count)
            .map(|i| {
                read_chunk("t.fq", file.len() as u64, i, count, |r| Ok(file[r.start as usize..r.end as usize].to_vec()))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_record_belongs_to_exactly_one_chunk() {
        let file = sample(2000, 7);
        for count in [1, 2, 3, 7, 64, 1000, 5000] {
            let parts = chunks(&file, count);
            let joined: Vec<u8> = parts.iter().flat_map(|c| c.bytes.clone()).collect();
            assert_eq!(joined, file, "{count} chunks put together give the file back");
            assert_eq!(parts.iter().map(|c| c.records).sum::<usize>(), 2000, "{count} chunks");
            for c in parts.iter().filter(|c| c.records > 0) {
                assert_eq!(file[c.offset as usize], b'@');
            }
        }
    }

    #[test]
    fn a_record_start_is_found_from_every_byte() {
        let file = sample(300, 11);
        let starts: Vec<usize> = {
            let mut v = Vec::new();
            let mut p = 0;
            while p < file.len() {
                v.push(p);
                let mut r = fastq::Record::default();
                p += fastq::io::Reader::new(&file[p..]).read_record(&mut r).unwrap();
            }
            v
        };
        for s in 1..file.len() {
            let expected = starts.iter().copied().find(|&q| q >= s);
            let window = &file[s - 1..];
            let got = match first_record(window, 1, true) {
                Found::At(q) => Some(s - 1 + q),
                Found::None => None,
                Found::NeedMore => panic!("the whole rest of the file was given"),
            };
            assert_eq!(got, expected, "from byte {s}");
        }
    }

    #[test]
    fn bad_records_are_named_with_their_byte_offset() {
        let good = sample(50, 3);
        let cases: [(&[u8], &str); 4] = [
            (b"@a\nACGT\n+\nIII\n", "the record at byte 0 (@a): quality has 3 characters, sequence 4"),
            (b"@a\nACGT\n+\n", "the record at byte 0 (@a): quality has 0 characters, sequence 4"),
            (b"@a\nACGT\nIIII\n", "the record at byte 0 (@a)"),
            (b">a\nACGT\n", "does not start with a FASTQ record"),
        ];
        for (tail, says) in cases {
            let file = if tail[0] == b'>' { tail.to_vec() } else { [good.as_slice(), tail].concat() };
            let err = (0..2)
                .find_map(|i| {
                    read_chunk("reads.fq", file.len() as u64, i, 2, |r| {
                        Ok(file[r.start as usize..r.end as usize].to_vec())
                    })
                    .err()
                })
                .expect("a chunk refuses it");
            let text = err.to_string();
            let says = says.replace("byte 0", &format!("byte {}", if tail[0] == b'>' { 0 } else { good.len() }));
            assert!(text.starts_with("reads.fq: ") && text.contains(&says), "{text} (expected {says})");
        }
    }

    /// The second file of a pair: the same names (`/2`), other lengths.
    fn mates(first: &[u8], seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut reader = fastq::io::Reader::new(first);
        let mut out = Vec::new();
        let mut writer = fastq::io::Writer::new(&mut out);
        let mut record = fastq::Record::default();
        while reader.read_record(&mut record).unwrap() > 0 {
            let name = String::from_utf8_lossy(record.name()).replace("/1", "/2");
            let len = rng.random_range(1..300);
            let mate = fastq::Record::new(fastq::record::Definition::new(name, ""), vec![b'C'; len], vec![b'@'; len]);
            writer.write_record(&mate).unwrap();
        }
        out
    }

    #[test]
    fn each_chunk_finds_its_mates_in_the_second_file() {
        let first = sample(3000, 21);
        let second = mates(&first, 22);
        let names = |bytes: &[u8]| {
            let mut reader = fastq::io::Reader::new(bytes);
            let mut record = fastq::Record::default();
            let mut out = Vec::new();
            while reader.read_record(&mut record).unwrap() > 0 {
                out.push(mate_name(record.name()).to_vec());
            }
            out
        };
        for count in [1, 3, 16] {
            let mut joined = Vec::new();
            for chunk in chunks(&first, count) {
                let Some(name) = first_name(&chunk.bytes) else { continue };
                let estimate = chunk.offset * second.len() as u64 / first.len() as u64;
                let theirs = read_mates("r2.fq", second.len() as u64, &name, chunk.records, estimate, |r| {
                    Ok(second[r.start as usize..r.end as usize].to_vec())
                })
                .unwrap();
                assert_eq!(names(&theirs.bytes), names(&chunk.bytes), "{count} chunks");
                joined.extend(theirs.bytes);
            }
            assert_eq!(joined, second, "{count} chunks take the second file whole");
        }
        let other = sample(10, 99);
        let err = read_mates("r2.fq", other.len() as u64, b"r2999/1", 1, 0, |r| {
            Ok(other[r.start as usize..r.end as usize].to_vec())
        })
        .unwrap_err();
        assert!(err.to_string().contains("holds no mate of r2999/1"), "{err}");
    }

    #[test]
    fn a_long_last_record_is_read_past_the_margin() {
        let mut file = sample(10, 5);
        let long = MARGIN * 3;
        let record = fastq::Record::new(fastq::record::Definition::new("long", ""), vec![b'A'; long], vec![b'I'; long]);
        fastq::io::Writer::new(&mut file).write_record(&record).unwrap();
        let parts = chunks(&file, 2);
        assert_eq!(parts.iter().map(|c| c.records).sum::<usize>(), 11);
    }
}
