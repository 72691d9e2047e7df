//! Kubernetes resource quantities ("500m", "1.5", "128Mi", "129e6").
//!
//! Manifests written for Kubernetes express CPU and memory in its quantity
//! notation, so Skein accepts the same grammar: a non-negative decimal number
//! followed by an optional binary suffix (`Ki`…`Ei`), decimal suffix
//! (`m`, `k`…`E`) or decimal exponent (`e3`). Values are computed exactly in
//! integer arithmetic (no floats), so `0.1` CPU is exactly 100 millicores and
//! a hostile `1e400` is an error rather than a panic or a silent saturation.

/// Why a quantity was refused; the message says what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not CPU notation at all (garbage, empty, binary suffix).
    #[error("{0:?} is not a CPU quantity: use cores (\"1\", \"0.5\") or millicores (\"500m\")")]
    InvalidCpu(String),
    /// Not memory notation at all (garbage, empty, unknown suffix such as `MB`).
    #[error(
        "{0:?} is not a memory quantity: use a number with an optional suffix \
         Ki, Mi, Gi, Ti, Pi, Ei (binary) or k, M, G, T, P, E (decimal), e.g. 128Mi"
    )]
    InvalidMemory(String),
    /// A minus sign: resources cannot be negative.
    #[error("{0:?} is negative: resource quantities must be 0 or more")]
    Negative(String),
    /// CPU finer than one millicore, which neither Docker nor the scheduler can express.
    #[error("{0:?} is finer than one millicore: use at most 3 decimals (\"0.001\" = \"1m\")")]
    TooPrecise(String),
    /// Does not fit in 64 bits once converted to millicores or bytes.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Which resource is being parsed; decides the unit and the allowed suffixes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cpu,
    Memory,
}

/// Parses a CPU quantity into millicores ("500m" → 500, "1.5" → 1500).
pub fn parse_cpu_millis(s: &str) -> Result<u64, QuantityError> {
    parse(s, Kind::Cpu)
}

/// Parses a memory quantity into bytes ("128Mi" → 134217728); a fractional
/// byte count ("1.5k" is fine, "0.5" is not whole) is rounded up.
pub fn parse_memory_bytes(s: &str) -> Result<u64, QuantityError> {
    parse(s, Kind::Memory)
}

/// Most significant digits kept exactly; more cannot fit a u128 mantissa.
const MAX_DIGITS: usize = 38;
/// Largest decimal exponent considered; anything beyond overflows u64 anyway.
const MAX_EXPONENT: i32 = 100;

fn parse(s: &str, kind: Kind) -> Result<u64, QuantityError> {
    let invalid = || match kind {
        Kind::Cpu => QuantityError::InvalidCpu(s.to_string()),
        Kind::Memory => QuantityError::InvalidMemory(s.to_string()),
    };
    let too_large = || QuantityError::TooLarge(s.to_string());

    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(invalid());
    }

    // Mantissa digits without leading zeros or trailing fraction zeros, and
    // the power of ten they are scaled by.
    let frac_part = frac_part.trim_end_matches('0');
    let digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let mut exp10 = -i32::try_from(frac_part.len()).map_err(|_| invalid())?;
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" if kind == Kind::Memory => {
            exp2 = 10 * (1 + "KMGTPE".find(&suffix[..1]).unwrap_or(0) as u32);
        }
        "m" if kind == Kind::Cpu => exp10 -= 3,
        "k" | "M" | "G" | "T" | "P" | "E" => {
            exp10 += 3 * (1 + "kMGTPE".find(suffix).unwrap_or(0) as i32);
        }
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(invalid)?;
            // Clamped: past the limit the result is 0-or-overflow either way.
            let exp: i32 = match exp.parse() {
                Ok(e) if (-MAX_EXPONENT..=MAX_EXPONENT).contains(&e) => e,
                _ if exp.starts_with('-') => -MAX_EXPONENT - 1,
                _ => MAX_EXPONENT + 1,
            };
            exp10 += exp;
        }
    }
    if negative && !digits.is_empty() {
        return Err(QuantityError::Negative(s.to_string()));
    }
    if digits.is_empty() {
        return Ok(0);
    }
    if digits.len() > MAX_DIGITS {
        return Err(too_large());
    }
    let mantissa: u128 = digits.parse().map_err(|_| invalid())?;
    if kind == Kind::Cpu {
        exp10 += 3;
    }

    let scaled = mantissa.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
    let value = if exp10 >= 0 {
        10u128
            .checked_pow(exp10.unsigned_abs())
            .and_then(|p| scaled.checked_mul(p))
            .ok_or_else(too_large)?
    } else {
        // A divisor past u128 exceeds any mantissa: the quotient is 0 with a remainder.
        let (q, exact) = match 10u128.checked_pow(exp10.unsigned_abs()) {
            Some(d) => (scaled / d, scaled % d == 0),
            None => (0, false),
        };
        match (exact, kind) {
            (true, _) => q,
            (false, Kind::Cpu) => return Err(QuantityError::TooPrecise(s.to_string())),
            (false, Kind::Memory) => q + 1,
        }
    };
    u64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_examples() {
        for (s, want) in [
            ("500m", 500),
            ("1", 1000),
            ("1.5", 1500),
            ("0.25", 250),
            ("2000m", 2000),
            ("0.001", 1),
            (".5", 500),
            ("1.", 1000),
            ("+2", 2000),
            ("0", 0),
            ("2e-1", 200),
            ("1k", 1_000_000),
            ("1.5000000000000000000000000000000000000000000", 1500),
        ] {
            assert_eq!(parse_cpu_millis(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn cpu_rejections() {
        use QuantityError::*;
        for (s, want) in [
            ("-1", Negative("-1".into())),
            ("0.0001", TooPrecise("0.0001".into())),
            ("1.5m", TooPrecise("1.5m".into())),
            ("", InvalidCpu("".into())),
            ("abc", InvalidCpu("abc".into())),
            ("1Gi", InvalidCpu("1Gi".into())),
            ("1..2", InvalidCpu("1..2".into())),
            ("1e", InvalidCpu("1e".into())),
            ("1e3m", InvalidCpu("1e3m".into())),
            (" 1", InvalidCpu(" 1".into())),
            (
                "99999999999999999999",
                TooLarge("99999999999999999999".into()),
            ),
            ("1e400", TooLarge("1e400".into())),
        ] {
            assert_eq!(parse_cpu_millis(s), Err(want), "{s}");
        }
    }

    #[test]
    fn memory_examples() {
        for (s, want) in [
            ("134217728", 134_217_728),
            ("128Mi", 134_217_728),
            ("1Ki", 1024),
            ("1Ei", 1 << 60),
            ("1.5Gi", 1_610_612_736),
            ("1k", 1000),
            ("64M", 64_000_000),
            ("2E", 2_000_000_000_000_000_000),
            ("129e6", 129_000_000),
            ("0.5", 1),
            ("1e-400", 1),
            ("0", 0),
            ("0e400", 0),
        ] {
            assert_eq!(parse_memory_bytes(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn memory_rejections() {
        let err = parse_memory_bytes("128MB").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"128MB\" is not a memory quantity: use a number with an optional suffix \
             Ki, Mi, Gi, Ti, Pi, Ei (binary) or k, M, G, T, P, E (decimal), e.g. 128Mi"
        );
        assert!(matches!(
            parse_memory_bytes("-1Mi"),
            Err(QuantityError::Negative(_))
        ));
        assert!(matches!(
            parse_memory_bytes("16Ei"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            parse_memory_bytes("100m"),
            Err(QuantityError::InvalidMemory(_))
        ));
        assert!(matches!(
            parse_memory_bytes("Mi"),
            Err(QuantityError::InvalidMemory(_))
        ));
    }

    proptest! {
        #[test]
        fn millis_round_trip(n in 0u64..=u64::MAX / 1000) {
            prop_assert_eq!(parse_cpu_millis(&format!("{n}m")), Ok(n));
        }

        #[test]
        fn cores_round_trip(n in 0u64..1_000_000, frac in 0u64..1000) {
            prop_assert_eq!(parse_cpu_millis(&format!("{n}.{frac:03}")), Ok(n * 1000 + frac));
        }

        #[test]
        fn mebibytes(n in 0u64..(1 << 40)) {
            prop_assert_eq!(parse_memory_bytes(&format!("{n}Mi")), Ok(n << 20));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}") {
            let _ = parse_cpu_millis(&s);
            let _ = parse_memory_bytes(&s);
        }

        #[test]
        fn quantity_like_strings_never_panic(s in "[-+]?[0-9.]{0,45}([eE][-+]?[0-9]{0,12}|[kMGTPEm]i?)?") {
            let _ = parse_cpu_millis(&s);
            let _ = parse_memory_bytes(&s);
        }
    }
}
