//! Deterministic random numbers: the same seed gives the same numbers on every machine and with any
//! number of threads.
//!
//! Scene generation and training (shuffling, augmentation) use [`Rng`] (xoshiro256++), forked into named sub-streams so that adding a draw
//! in one part of the generator does not shift every other part. Per-ray noise uses [`RayRng`], a
//! counter-based generator keyed by (seed, scan, ray), so the noise of a ray does not depend on which
//! thread casts it or in which order. Gaussians use the Irwin–Hall sum of four uniforms: no
//! transcendental functions, and the truncated tails (±3.5 σ) suit sensor noise.

/// The splitmix64 finaliser: a bijective 64-bit mix.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes two words into one (order matters).
#[inline]
pub fn hash2(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b).rotate_left(17))
}

/// A stable 64-bit key of a stream name (FNV-1a), for [`Rng::stream`].
fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// xoshiro256++ seeded through splitmix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix64(x)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// An independent stream for `name` under `seed`.
    pub fn stream(seed: u64, name: &str) -> Self {
        Rng::new(hash2(seed, name_key(name)))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3])).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    #[inline]
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in 0..n (n > 0).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Approximately standard normal (Irwin–Hall of four uniforms, unit variance).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        let sum = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (sum - 2.0) * 3f64.sqrt()
    }

    /// Picks one element of a non-empty slice.
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Picks an index with probability proportional to its weight (weights not all zero).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Counter-based random numbers for one ray: a splitmix64 sequence started at a key.
#[derive(Debug, Clone, Copy)]
pub struct RayRng {
    state: u64,
}

impl RayRng {
    #[inline]
    pub fn new(key: u64) -> Self {
        RayRng { state: mix64(key) }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in (0, 1): never 0, so it can go through a logarithm.
    #[inline]
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) * (1.0 / (1u64 << 24) as f32)
    }

    /// Approximately standard normal (Irwin–Hall of four uniforms).
    #[inline]
    pub fn normal(&mut self) -> f32 {
        let bits = self.next_u64();
        let u = |shift: u32| ((bits >> shift) & 0xFFFF) as f32 * (1.0 / 65536.0);
        (u(0) + u(16) + u(32) + u(48) - 2.0 + 2.0 / 65536.0) * 1.732_050_8
    }
}

/// A uniform in (0, 1) that depends only on `key`, for per-(ray, primitive) decisions that must not
/// depend on the order in which primitives are visited.
#[inline]
pub fn unit_from_key(key: u64) -> f32 {
    ((mix64(key) >> 40) as f32 + 0.5) * (1.0 / (1u64 << 24) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map({
            let mut r = Rng::stream(7, "world");
            move |_| r.next_u64()
        }).collect();
        let b: Vec<u64> = (0..4).map({
            let mut r = Rng::stream(7, "world");
            move |_| r.next_u64()
        }).collect();
        let c: Vec<u64> = (0..4).map({
            let mut r = Rng::stream(7, "traffic");
            move |_| r.next_u64()
        }).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        let mut ray = RayRng::new(3);
        let samples: Vec<f32> = (0..n).map(|_| ray.normal()).collect();
        let var = samples.iter().map(|x| x * x).sum::<f32>() / n as f32;
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert!((0..n).all(|_| {
            let u = ray.uniform();
            u > 0.0 && u < 1.0
        }));
    }
}
