//! Money as integers: micros (millionths) of the bidder's currency.
//!
//! OpenRTB prices are CPM (per thousand impressions) as JSON numbers;
//! exchanges report clearing prices as decimal text or, encrypted, as CPM
//! micros. The ledger counts what one impression costs, in micros of the
//! currency: a price of 2.5 CPM costs 2,500 micros. Nothing here is ever a
//! float once it is in the ledger; floats appear only at the edges (a
//! strategy's bid price, the API's currency units), converted here once.

/// Micros per currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// Impressions a CPM price is quoted for.
const IMPRESSIONS_PER_CPM: i64 = 1_000;

/// The largest amount any API takes, in currency units: a trillion. Far
/// past any real budget, and keeps every sum in micros far from overflow.
pub const UNITS_MAX: f64 = 1e12;

/// A CPM price as CPM micros, rounded to the nearest micro. `price` has
/// passed the answer checks (finite, positive, under the operator's cap).
pub fn cpm_micros(price: f64) -> i64 {
    (price * MICROS_PER_UNIT as f64).round() as i64
}

/// What one impression at `cpm_micros` costs, in micros of the currency,
/// rounded up: a reservation never holds less than the bid can cost.
pub fn impression_cost_ceil(cpm_micros: i64) -> i64 {
    (cpm_micros + IMPRESSIONS_PER_CPM - 1).div_euclid(IMPRESSIONS_PER_CPM)
}

/// What one impression at `cpm_micros` costs, rounded to the nearest micro
/// (halves up): a settlement charges the clearing price.
pub fn impression_cost(cpm_micros: i64) -> i64 {
    (cpm_micros + IMPRESSIONS_PER_CPM / 2).div_euclid(IMPRESSIONS_PER_CPM)
}

/// Currency units (an API's number) as micros, rounded to the nearest
/// micro; `None` for a negative, non-finite or absurd amount.
pub fn units_to_micros(units: f64) -> Option<i64> {
    (units.is_finite() && (0.0..=UNITS_MAX).contains(&units))
        .then(|| (units * MICROS_PER_UNIT as f64).round() as i64)
}

/// Micros as currency units for display (exact for any amount under 2^53
/// micros, i.e. nine billion units).
pub fn micros_to_units(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_UNIT as f64
}

/// Longest decimal price accepted, in bytes.
const DECIMAL_BYTES_MAX: usize = 24;

/// A non-negative decimal price (`"1.25"`, `"3"`, `".5"`) as micros,
/// parsed exactly: no float on the way. Digits past the sixth decimal are
/// refused rather than rounded, as are signs, exponents and anything over
/// [`UNITS_MAX`].
pub fn parse_decimal_micros(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > DECIMAL_BYTES_MAX {
        return None;
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && fraction.is_empty())
        || fraction.len() > 6
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if whole as f64 > UNITS_MAX {
        return None;
    }
    let mut micros = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        micros += i64::from(digit - b'0') * 10_i64.pow(5 - i as u32);
    }
    Some(whole * MICROS_PER_UNIT + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal_micros("1.25"), Some(1_250_000));
        assert_eq!(parse_decimal_micros("3"), Some(3_000_000));
        assert_eq!(parse_decimal_micros(".5"), Some(500_000));
        assert_eq!(parse_decimal_micros("0.000001"), Some(1));
        assert_eq!(parse_decimal_micros("7."), Some(7_000_000));
        for bad in [
            "",
            ".",
            "-1",
            "+1",
            "1e3",
            "0.0000001",
            "NaN",
            "inf",
            "1.2.3",
            " 1",
            "1,5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_decimal_micros(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn impression_costs_round_as_documented() {
        assert_eq!(impression_cost(cpm_micros(2.5)), 2_500);
        assert_eq!(impression_cost_ceil(1_001), 2);
        assert_eq!(impression_cost(1_499), 1);
        assert_eq!(impression_cost(1_500), 2);
        assert_eq!(units_to_micros(10.0), Some(10_000_000));
        assert_eq!(units_to_micros(-1.0), None);
        assert_eq!(units_to_micros(f64::NAN), None);
    }
}
