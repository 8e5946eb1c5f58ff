//! What a wrong-numbers failure shows, read from the grader's report and
//! from the day's other tests, turned into advice: NaN or inf in the output
//! (an overflow), only f16/bf16 failing (compute in f32), only the variant
//! without an explicit argument failing (its default), every element wrong
//! (the formula) or a few (an edge).

use crate::report::TestResult;

/// The numbers a `[wrong numbers]` report states.
#[derive(Debug, Default, PartialEq)]
pub struct Numbers {
    pub got: Option<f64>,
    pub expected: Option<f64>,
    /// Elements outside the tolerance, and the total.
    pub failing: Option<(u64, u64)>,
}

fn number_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let at = text.find(marker)? + marker.len();
    let rest = &text[at..];
    let end = rest.find([',', ' ', ')', '\n']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Reads `got X, expected Y` and `K of M elements outside` from a report.
pub fn numbers(report: &str) -> Numbers {
    let failing = report.find(" elements outside").and_then(|end| {
        let head = &report[..end];
        let (k, m) = head.rsplit_once(" of ")?;
        let k = k
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let m = m.trim().parse().ok()?;
        Some((k, m))
    });
    Numbers {
        got: number_after(report, "got ").and_then(parse_float),
        expected: number_after(report, "expected ").and_then(parse_float),
        failing,
    }
}

/// `softmax_f16` -> (`softmax`, `f16`).
fn split_dtype(name: &str) -> (&str, Option<&str>) {
    for d in ["_f32", "_f16", "_bf16"] {
        if let Some(stem) = name.strip_suffix(d) {
            return (stem, Some(&d[1..]));
        }
    }
    (name, None)
}

/// Variant words in test names, and what to look at when only the case with
/// (or without) that word fails.
const VARIANTS: &[(&str, &str)] = &[
    (
        "scale",
        "the default scale is 1/sqrt(D), D the query's last axis",
    ),
    ("offset", "positions start at `offset`, not 0"),
    ("mask", "the mask is added to the scores before the softmax"),
    ("causal", "query i sees keys up to i + S - L"),
    (
        "traditional",
        "traditional pairs are interleaved (x[2i], x[2i+1]), not halves",
    ),
    (
        "large",
        "large inputs overflow: subtract the max first, or compute in f32",
    ),
    ("bias", "the bias is added after the matmul"),
    (
        "llama",
        "the Llama config differs (no qkv bias, its own rope_theta, tied embeddings)",
    ),
];

/// The one word `longer` has in addition to `shorter` (both without dtype),
/// when it is a known variant word.
fn extra_word<'a>(longer: &'a str, shorter: &str) -> Option<&'a str> {
    let (l, s): (Vec<&str>, Vec<&str>) =
        (longer.split('_').collect(), shorter.split('_').collect());
    if l.len() != s.len() + 1 {
        return None;
    }
    let at = l
        .iter()
        .zip(&s)
        .position(|(a, b)| a != b)
        .unwrap_or(s.len());
    let (head, tail) = (&l[..at], &l[at + 1..]);
    if head != &s[..at] || tail != &s[at..] {
        return None;
    }
    VARIANTS.iter().any(|(w, _)| *w == l[at]).then_some(l[at])
}

fn variant_advice(word: &str) -> &'static str {
    VARIANTS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, a)| *a)
        .unwrap_or("")
}

/// Sentences of advice for a wrong-numbers failure of `test`, given every
/// result of its day. Empty when nothing stands out.
pub fn advice(test: &str, report: &str, day_tests: &[TestResult]) -> Vec<String> {
    let mut out = Vec::new();
    let n = numbers(report);
    if let (Some(g), Some(e)) = (n.got, n.expected) {
        if !g.is_finite() && e.is_finite() {
            out.push(format!(
                "the output has {} where a finite value is expected: an overflow (exp of a large value without \
                 subtracting the max first; x^2 or a sum in f16) or a division by zero",
                if g.is_nan() { "NaN" } else { "inf" }
            ));
        } else if e.is_infinite() && g.is_finite() {
            out.push(format!(
                "the expected value there is {e}: a masked position must come out as {e} exactly, not {g}"
            ));
        }
    }
    let passes = |name: &str| {
        day_tests
            .iter()
            .any(|t| t.name == name && t.outcome.is_pass())
    };
    let (stem, dtype) = split_dtype(test);
    if let Some(d @ ("f16" | "bf16")) = dtype {
        if passes(&format!("{stem}_f32")) {
            out.push(format!(
                "{stem}_f32 passes, so only {d} is wrong: compute in f32 (`as_dtype(Dtype::Float32)`) and cast the \
                 result back (in f16, exp overflows past 11 and x^2 past 256)"
            ));
        }
    }
    for other in day_tests.iter().filter(|t| t.name != test) {
        let (other_stem, other_dtype) = split_dtype(&other.name);
        if other_dtype != dtype {
            continue;
        }
        if let Some(word) = extra_word(stem, other_stem) {
            // this test has the variant word: the plain case passes?
            if passes(&other.name) {
                out.push(format!(
                    "{} passes, so only the `{word}` variant is wrong: {}",
                    other.name,
                    variant_advice(word)
                ));
            }
        } else if let Some(word) = extra_word(other_stem, stem) {
            // this test lacks the variant word (uses the default)
            if passes(&other.name) {
                out.push(format!(
                    "{} (which sets `{word}`) passes, while this case uses the default: {}",
                    other.name,
                    variant_advice(word)
                ));
            }
        }
    }
    // NaN or inf already explains a failure (an overflow spreads to every
    // element it touches): "the formula itself" would contradict it.
    let overflow = n.got.is_some_and(|g| !g.is_finite()) && n.expected.is_some_and(f64::is_finite);
    if let Some((k, m)) = n.failing {
        if overflow {
            // said above
        } else if m > 1 && k == m {
            out.push(format!(
                "all {m} elements are wrong: the formula itself (an axis, a missing term, a transposed weight), not an edge case"
            ));
        } else if m >= 20 && k * 20 <= m {
            out.push(format!(
                "only {k} of {m} elements {} wrong: look at the edges (the mask, the first or last position, a \
                 boundary row) or at rounding",
                if k == 1 { "is" } else { "are" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::Outcome;

    fn r(name: &str, outcome: Outcome) -> TestResult {
        TestResult {
            name: name.into(),
            outcome,
        }
    }

    fn wrong(report: &str) -> Outcome {
        Outcome::WrongNumbers {
            report: report.into(),
            seed: None,
        }
    }

    const REPORT: &str = "t, case day1/x, tensor `y` (shape [2, 3], float32)\n  worst element at [1, 0]: got 2.0000000e0, expected 3.0000000e0 (abs err 1.000e0, rel err 3.333e-1)\n  6 of 6 elements outside |got - expected| <= atol + rtol*|expected| with rtol 1e-5, atol 1e-6";

    #[test]
    fn reads_the_numbers_of_a_report() {
        assert_eq!(
            numbers(REPORT),
            Numbers {
                got: Some(2.0),
                expected: Some(3.0),
                failing: Some((6, 6))
            }
        );
        let nan = numbers("worst element at [0]: got NaN, expected 1.0e0 (abs err NaN, rel err NaN)\n  1 of 3 elements outside");
        assert!(nan.got.unwrap().is_nan());
        assert_eq!(nan.failing, Some((1, 3)));
        let inf = numbers("got 0.0e0, expected -inf (abs err inf");
        assert_eq!(inf.expected, Some(f64::NEG_INFINITY));
    }

    #[test]
    fn nan_in_the_output_means_overflow() {
        let rep = "worst element at [0]: got NaN, expected 1.0e0\n  3 of 3 elements outside";
        let a = advice("softmax_large_f32", rep, &[]);
        assert!(a[0].contains("NaN") && a[0].contains("overflow"), "{a:?}");
        // every element is NaN: that is the overflow, not "the formula itself"
        assert!(!a.iter().any(|s| s.contains("the formula itself")), "{a:?}");
    }

    #[test]
    fn a_finite_value_where_minus_inf_is_expected_is_an_unmasked_position() {
        let a = advice(
            "causal_mask_f32",
            "got 0.0e0, expected -inf (abs err inf)",
            &[],
        );
        assert!(a[0].contains("masked position"), "{a:?}");
    }

    #[test]
    fn only_low_precision_failing_says_compute_in_f32() {
        let day = vec![
            r("softmax_f32", Outcome::Pass),
            r("softmax_f16", wrong(REPORT)),
        ];
        let a = advice("softmax_f16", REPORT, &day);
        assert!(
            a.iter()
                .any(|s| s.contains("only f16 is wrong") && s.contains("f32")),
            "{a:?}"
        );
        // the f32 failure itself gets no such advice
        let day = vec![
            r("softmax_f32", wrong(REPORT)),
            r("softmax_f16", Outcome::Pass),
        ];
        let a = advice("softmax_f32", REPORT, &day);
        assert!(!a.iter().any(|s| s.contains("compute in f32")), "{a:?}");
    }

    #[test]
    fn only_the_default_scale_failing_points_at_the_default() {
        let day = vec![
            r("sdpa_simple_f32", wrong(REPORT)),
            r("sdpa_simple_scale_f32", Outcome::Pass),
            r("sdpa_simple_scale_f16", wrong(REPORT)),
        ];
        let a = advice("sdpa_simple_f32", REPORT, &day);
        assert!(
            a.iter().any(
                |s| s.contains("sdpa_simple_scale_f32 (which sets `scale`) passes")
                    && s.contains("1/sqrt(D)")
            ),
            "{a:?}"
        );
        // the other way round: only the variant fails
        let day = vec![
            r("rope_f32", Outcome::Pass),
            r("rope_offset_f32", wrong(REPORT)),
        ];
        let a = advice("rope_offset_f32", REPORT, &day);
        assert!(
            a.iter().any(|s| s.contains("only the `offset` variant")),
            "{a:?}"
        );
    }

    #[test]
    fn every_element_versus_a_few() {
        let a = advice("t_f32", REPORT, &[]);
        assert!(a.iter().any(|s| s.contains("all 6 elements")), "{a:?}");
        let few = "got 1.0e0, expected 2.0e0\n  3 of 480 elements outside";
        let a = advice("t_f32", few, &[]);
        assert!(a.iter().any(|s| s.contains("only 3 of 480")), "{a:?}");
        let half = "got 1.0e0, expected 2.0e0\n  240 of 480 elements outside";
        assert!(advice("t_f32", half, &[]).is_empty());
    }

    #[test]
    fn variant_words_must_be_whole_words() {
        assert_eq!(
            extra_word("sdpa_simple_scale", "sdpa_simple"),
            Some("scale")
        );
        assert_eq!(
            extra_word("rope_traditional_offset", "rope_traditional"),
            Some("offset")
        );
        assert_eq!(extra_word("linear_no_bias", "linear_bias"), None);
        assert_eq!(extra_word("sdpa_simple", "sdpa_simple"), None);
        assert_eq!(extra_word("mha_foo", "mha"), None);
    }
}
