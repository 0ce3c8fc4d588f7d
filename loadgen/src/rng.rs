//! The deterministic pseudo-random generator behind `synth`.
//!
//! xoshiro256** (Blackman and Vigna), seeded through SplitMix64. It lives
//! here rather than in a dependency because the promise "same seed, same
//! bytes" must survive dependency upgrades: a random-number crate is free to
//! change its output stream between releases, this file is not. Statistical
//! quality is far beyond what synthetic traffic needs; it is not for
//! cryptography.

/// The seed `synth` uses when none is given. Printed with every run.
pub const SEED_DEFAULT: u64 = 0x6761_7665_6c5f_7262; // "gavel_rb"

#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // SplitMix64 spreads any seed (even 0) over the whole state, which
        // xoshiro requires to be non-zero.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Multiply-shift (Lemire): bias below 2^-64 * n, irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [low, high].
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low <= high);
        low + self.below((high - low) as u64 + 1) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One element of a non-empty slice of `(item, weight)`, by weight.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        &self.weighted_by(items, |(_, weight)| *weight).0
    }

    /// One element of a non-empty slice, with the weight `weight` gives it.
    pub fn weighted_by<'a, T>(&mut self, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
        let total: u64 = items.iter().map(|item| u64::from(weight(item))).sum();
        let mut ticket = self.below(total);
        for item in items {
            let weight = u64::from(weight(item));
            if ticket < weight {
                return item;
            }
            ticket -= weight;
        }
        &items[items.len() - 1]
    }

    /// Exponentially distributed with the given mean: the gap between
    /// events of a Poisson process.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        -(1.0 - self.unit()).ln() * mean
    }

    /// Log-normal with the given median and spread (sigma of the logarithm):
    /// how prices and floors are distributed.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box-Muller; the second variate is dropped to keep the stream simple.
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * normal).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed() {
        // xoshiro256** seeded by SplitMix64(42), computed independently.
        // Changing these numbers changes every synthesized capture: don't.
        let mut rng = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                0x1578_0b2e_0c2e_c716,
                0x6104_d986_6d11_3a7e,
                0xae17_5332_39e4_99a1
            ]
        );
    }

    #[test]
    fn distributions_stay_in_range() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            assert!((0.0..1.0).contains(&rng.unit()));
            assert!(rng.below(3) < 3);
            assert!((-2..=2).contains(&rng.range(-2, 2)));
            assert!(rng.exponential(1.0) >= 0.0);
            assert!(rng.log_normal(1.0, 0.5) > 0.0);
        }
        let mean = (0..100_000).map(|_| rng.exponential(2.0)).sum::<f64>() / 100_000.0;
        assert!((mean - 2.0).abs() < 0.05, "{mean}");
    }
}
