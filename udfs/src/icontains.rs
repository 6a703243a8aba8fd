//! `icontains(text, needle)`: whether a text holds a value, ignoring case.
//!
//! `text ILIKE '%needle%'` means the same, but arrow compiles it into a regular expression for every batch (its
//! fast paths are for prefixes, suffixes and equality, over all-ASCII batches only): a Sigma keyword searched in
//! every text column made that compilation a tenth of a rule directory's time, and the search another tenth. Here
//! the needle is prepared once per call and found with `memchr`'s substring search.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use memchr::memmem::Finder;

use crate::common::{doc, finish, map_to_bool, to_utf8};

/// A needle, ready to be looked for in many texts.
pub struct Needle {
    lower: String,
    finder: Finder<'static>,
    anchors: Option<Anchors>,
}

impl Needle {
    pub fn new(needle: &str) -> Needle {
        let lower = needle.to_lowercase();
        let finder = Finder::new(lower.as_bytes()).into_owned();
        let anchors = Anchors::new(lower.as_bytes());
        Needle { lower, finder, anchors }
    }

    /// Whether `text` holds the needle, ignoring case: ASCII letters fold byte by byte (an ASCII needle can only
    /// match ASCII bytes of UTF-8 text); a needle with other letters is looked for in the text's Unicode lower
    /// case. `scratch` keeps the folded text between calls.
    pub fn is_in(&self, text: &str, scratch: &mut Vec<u8>) -> bool {
        if self.lower.is_ascii() {
            scratch.clear();
            scratch.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
            self.finder.find(scratch).is_some()
        } else {
            self.finder.find(text.to_lowercase().as_bytes()).is_some()
        }
    }
}

/// Two bytes of a needle that are not letters, and so read the same in any case: candidates for it are found in
/// the text as it is, with no folded copy, and each is compared ignoring case.
///
/// The keyword search of a rule directory looks for a value such as `<YOUR-BUCKET-NAME>` in every text column of
/// every event: folding all of that text to find it was most of the search. Bytes that are frequent in CloudTrail
/// text (space, quote, slash, digits…) are chosen last; with no two such bytes, the folded search is used.
struct Anchors {
    #[cfg(target_arch = "x86_64")]
    finder: memchr::arch::x86_64::avx2::packedpair::Finder,
    index: [usize; 2],
}

impl Anchors {
    fn new(lower: &[u8]) -> Option<Anchors> {
        const FREQUENT: &[u8] = b" \"/.-:,_=0123456789";
        if !lower.is_ascii() || lower.len() > usize::from(u8::MAX) {
            return None;
        }
        let others: Vec<usize> = (0..lower.len()).filter(|&i| !lower[i].is_ascii_alphabetic()).collect();
        let rare: Vec<usize> = others.iter().copied().filter(|&i| !FREQUENT.contains(&lower[i])).collect();
        // Rare bytes when there are two; of them, the first and last (the pair is then checked far apart).
        let pool = if rare.len() >= 2 { rare } else { others };
        match pool[..] {
            [a, .., b] => Anchors::at(lower, [a, b]),
            _ => None,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn at(lower: &[u8], index: [usize; 2]) -> Option<Anchors> {
        use memchr::arch::{all::packedpair::Pair, x86_64::avx2::packedpair::Finder};
        let pair = Pair::with_indices(lower, index[0] as u8, index[1] as u8)?;
        Some(Anchors { finder: Finder::with_pair(lower, pair)?, index })
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn at(_: &[u8], _: [usize; 2]) -> Option<Anchors> {
        None
    }

    /// The first place in `text` where the needle may start.
    fn candidate(&self, text: &[u8], needle: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if text.len() >= self.finder.min_haystack_len() {
            return self.finder.find_prefilter(text);
        }
        let [a, b] = self.index;
        (0..(text.len() + 1).checked_sub(needle.len())?).find(|&s| text[s + a] == needle[a] && text[s + b] == needle[b])
    }
}

/// Over a column with one needle: every value tested, NULL for NULL.
///
/// An ASCII needle is looked for once over the whole batch's text (far quicker than value by value: most values
/// are short, and a rare needle is skipped over at memory speed): at its anchors in the text as it is, or else in
/// the text folded in one pass. A match that runs past the end of its value starts the search again at the next
/// value.
fn over_column(texts: &StringArray, needle: &Needle) -> BooleanArray {
    let nulls = texts.nulls().cloned();
    if !needle.lower.is_ascii() || needle.lower.is_empty() {
        let mut scratch = Vec::new();
        let values = BooleanBuffer::collect_bool(texts.len(), |i| needle.is_in(texts.value(i), &mut scratch));
        return BooleanArray::new(values, nulls);
    }
    let offsets = texts.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[texts.len()] as usize);
    let lower = needle.lower.as_bytes();
    let mut hits = vec![false; texts.len()];
    let (mut at, mut row) = (0, 0);
    // A candidate in row `row` or after, starting at `found` (from `first`): whether it is a match, where to go on.
    // Past a match, or a candidate that runs past the end of its value, nothing more is to be found in that value.
    let mut settle = |found: usize, is_match: &dyn Fn(usize) -> bool| -> usize {
        let start = first + found;
        row += offsets[row + 1..].partition_point(|end| *end as usize <= start);
        let end = offsets[row + 1] as usize;
        if start + lower.len() > end {
            return end - first;
        }
        if is_match(found) {
            hits[row] = true;
            end - first
        } else {
            found + 1
        }
    };
    if let Some(anchors) = &needle.anchors {
        let text = &texts.values()[first..last];
        let is_match = |found: usize| text[found..found + lower.len()].eq_ignore_ascii_case(lower);
        while let Some(found) = anchors.candidate(&text[at..], lower) {
            at = settle(at + found, &is_match);
        }
    } else {
        let folded = folded(texts.values(), first..last);
        while let Some(found) = needle.finder.find(&folded[at..]) {
            at = settle(at + found, &|_| true);
        }
    }
    BooleanArray::new(BooleanBuffer::from(hits), nulls)
}

/// A text folded to lower case, with the buffer and range it came from.
struct Fold {
    buffer: Buffer,
    range: Range<usize>,
    lower: Arc<Vec<u8>>,
}

thread_local! {
    /// The text last folded on this thread. A rule directory searches one column for many values (every
    /// `userAgent|contains` of every rule, on the same batch), and folding it again for each was most of the
    /// search. The buffer is kept with it, so its address cannot be reused for other text while the fold is kept:
    /// same address and range, same bytes (Arrow buffers do not change).
    static FOLDED: RefCell<Option<Fold>> = const { RefCell::new(None) };
}

/// The bytes of `range` of `values`, ASCII letters in lower case.
fn folded(values: &Buffer, range: Range<usize>) -> Arc<Vec<u8>> {
    FOLDED.with_borrow_mut(|kept| {
        if let Some(f) = kept.as_ref()
            && f.buffer.as_ptr() == values.as_ptr()
            && f.range == range
        {
            return f.lower.clone();
        }
        let lower = Arc::new(values[range.clone()].iter().map(u8::to_ascii_lowercase).collect::<Vec<u8>>());
        *kept = Some(Fold { buffer: values.clone(), range, lower: lower.clone() });
        lower
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IContains {
    signature: Signature,
}

impl Default for IContains {
    fn default() -> Self {
        IContains { signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for IContains {
    fn name(&self) -> &str {
        "icontains"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[..] {
            [ColumnarValue::Array(texts), ColumnarValue::Scalar(needle)] => {
                let Some(needle) = needle.try_as_str().flatten() else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
                };
                finish(Arc::new(over_column(&to_utf8(texts)?, &Needle::new(needle))), false)
            }
            _ => map_to_bool(&args.args, args.number_rows, |s, r| {
                Some(Needle::new(s.get(1, r)?).is_in(s.get(0, r)?, &mut Vec::new()))
            }),
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether a text contains a value, ignoring case: text ILIKE '%value%' without wildcards in the \
                 value, and quicker. ASCII letters compare case-insensitively byte by byte; other letters by their \
                 Unicode lower case.",
                "icontains(text, value)",
                "SELECT eventname, useragent FROM cloudtrail WHERE icontains(useragent, 'kali')",
            )
            .with_argument("text", "The text to search")
            .with_argument("value", "What to find in it")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{call, encodings};
    use datafusion::arrow::array::AsArray;

    fn is_in(text: &str, needle: &str) -> bool {
        Needle::new(needle).is_in(text, &mut Vec::new())
    }

    #[test]
    fn case_is_ignored_and_nothing_else() {
        assert!(is_in("Mozilla/5.0 (Kali Linux)", "kali"));
        assert!(is_in("S3 BROWSER 9.5", "s3 browser"));
        assert!(is_in("abc", ""));
        assert!(!is_in("kal i", "kali"));
        assert!(!is_in("ka", "kali"));
        // ASCII needle in text with other letters around it.
        assert!(is_in("日本語 KALI ü", "kali"));
        // Other letters fold by Unicode.
        assert!(is_in("ÜBER", "über"));
        assert!(!is_in("uber", "über"));
    }

    #[test]
    fn agrees_with_ilike_on_ascii() {
        let texts = ["aws-cli/2.0", "AWS-CLI", "Boto3", "", "x%y", "TruffleHog/3", "trufflehog"];
        let needles = ["cli", "AWS", "boto", "%", "hog/", ""];
        for t in texts {
            for n in needles {
                let want = t.to_ascii_lowercase().contains(&n.to_ascii_lowercase());
                assert_eq!(is_in(t, n), want, "{t:?} {n:?}");
            }
        }
    }

    #[test]
    fn over_every_encoding_nulls_stay_null() {
        let texts = [Some("Pacu/1.0"), None, Some("boto3")];
        for texts in encodings(&texts) {
            let needle = Arc::new(StringArray::from(vec!["PACU"; 3]));
            let out = call(&IContains::default(), vec![texts, needle]);
            let out = out.as_boolean();
            assert!(out.value(0) && out.is_null(1) && !out.value(2));
        }
    }

    /// The fold kept for the next needle is only used for the same text: needles over one column in turn, then
    /// another column, then a slice of the first, each get their own text's answer.
    #[test]
    fn a_kept_fold_serves_only_its_own_text() {
        let agents: StringArray = vec![Some("Kali Linux"), Some("Boto3/1.2"), None, Some("TruffleHog")].into();
        let other: StringArray = vec![Some("KALI"), Some("pacu"), Some("x"), Some("y")].into();
        let found = |texts: &StringArray, needle: &str| {
            let out = over_column(texts, &Needle::new(needle));
            (0..out.len()).map(|i| out.is_valid(i).then(|| out.value(i))).collect::<Vec<_>>()
        };
        for _ in 0..2 {
            assert_eq!(found(&agents, "kali"), [Some(true), Some(false), None, Some(false)]);
            assert_eq!(found(&agents, "HOG"), [Some(false), Some(false), None, Some(true)]);
            assert_eq!(found(&other, "pacu"), [Some(false), Some(true), Some(false), Some(false)]);
            assert_eq!(found(&agents.slice(1, 3), "boto"), [Some(true), None, Some(false)]);
        }
    }

    /// Needles with two bytes that are not letters are found at those bytes in the text as it is: the same answers
    /// as value by value, over batches long enough for the vector search, in every case of the letters.
    #[test]
    fn anchored_search_agrees_with_the_value_search() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let alphabet = b"aAbByY<>-\"/ ";
        let values: Vec<Option<String>> = (0..2000)
            .map(|_| {
                let len = next(12) as usize;
                (next(10) > 0)
                    .then(|| (0..len).map(|_| alphabet[next(alphabet.len() as u64) as usize] as char).collect())
            })
            .collect();
        let texts: StringArray = values.iter().map(|v| v.as_deref()).collect::<Vec<_>>().into();
        for needle in ["<y>", "<Y-B>", "a-b", "\"b\"", "-<", "y<a", "b/ a", "<yb-by>"] {
            let n = Needle::new(needle);
            // One byte that is not a letter is not enough: those are searched folded, for comparison.
            let two = needle.bytes().filter(|b| !b.is_ascii_alphabetic()).count() >= 2;
            assert_eq!(n.anchors.is_some(), two && cfg!(target_arch = "x86_64"), "{needle}");
            let out = over_column(&texts, &n);
            let mut found = 0;
            for (i, v) in values.iter().enumerate() {
                let want = v.as_ref().map(|v| v.to_lowercase().contains(&needle.to_lowercase()));
                found += usize::from(want == Some(true));
                assert_eq!(out.is_valid(i).then(|| out.value(i)), want, "{needle:?} in {v:?}");
            }
            assert!(found > 0 || needle.len() > 4, "{needle:?} is found nowhere: the test tests nothing");
        }
    }

    /// The search over a whole batch finds what the search value by value finds: matches at the edges of values,
    /// across two values (not a match), overlapping a false start, in sliced arrays, with empty values and NULLs.
    #[test]
    fn the_batch_search_agrees_with_the_value_search() {
        let values = [
            Some("xa"),
            Some("ab"),
            Some("aab"),
            None,
            Some(""),
            Some("AB"),
            Some("a"),
            Some("b"),
            Some("zzab"),
            Some("aaaab"),
            Some("ba"),
            Some("é ab"),
            Some("a"),
            Some("x<B>"),
            Some("A-B a-"),
            Some("b"),
            Some("\"B\"<b"),
            Some(">"),
        ];
        let texts: StringArray = values.to_vec().into();
        for needle in ["ab", "aab", "a", "b", "é", "", "zzz", "xaab", "a-b", "<b>", "\"b\""] {
            let n = Needle::new(needle);
            for (offset, len) in [(0, values.len()), (1, 5), (3, 7), (6, 0)] {
                let slice = texts.slice(offset, len);
                let out = over_column(&slice, &n);
                for i in 0..len {
                    let want = values[offset + i].map(|v| v.to_lowercase().contains(needle));
                    let got = out.is_valid(i).then(|| out.value(i));
                    assert_eq!(got, want, "{needle:?} in {:?}", values[offset + i]);
                }
            }
        }
    }
}
