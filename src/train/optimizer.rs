//! SGD with momentum and weight decay (PyTorch's `torch.optim.SGD` update rule) over all trainable
//! parameters at once: the parameters are re-seated as views of one flat buffer, so a step is a handful
//! of kernels instead of several per tensor, and the momentum buffer is one tensor that a checkpoint
//! can store for an exact resume.
//!
//! Parameters that get no gradient (the reference's unused gate attention modules) are left alone, as
//! PyTorch skips parameters whose `.grad` is `None`.

use tch::{Kind, Tensor};

pub struct FlatSgd {
    params: Vec<Tensor>,
    /// Where each parameter starts in `flat`.
    offsets: Vec<i64>,
    flat: Tensor,
    momentum_buffer: Option<Tensor>,
    /// 1 for parameters that receive gradients, 0 for the others (found at the first step) and for
    /// the padding.
    mask: Option<Tensor>,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// Each parameter starts on a 512-byte boundary of the flat buffer, as a tensor of its own would
/// from libtorch's allocator: cuDNN's vectorised kernels read misaligned weights as a CUDA
/// "misaligned address" error (float32 training with cudnn_benchmark found it).
const ALIGN_ELEMENTS: i64 = 128;

impl FlatSgd {
    /// Takes over `params` (float32, all on one device): their storage moves into one buffer.
    pub fn new(params: Vec<Tensor>, momentum: f64, weight_decay: f64) -> Self {
        let device = params.first().map(|p| p.device()).unwrap_or(tch::Device::Cpu);
        let mut offsets = Vec::with_capacity(params.len());
        let mut end = 0;
        for p in &params {
            let start = (end + ALIGN_ELEMENTS - 1) / ALIGN_ELEMENTS * ALIGN_ELEMENTS;
            offsets.push(start);
            end = start + p.numel() as i64;
        }
        let flat = Tensor::zeros([end], (Kind::Float, device));
        tch::no_grad(|| {
            for (p, &offset) in params.iter().zip(&offsets) {
                let mut view = flat.narrow(0, offset, p.numel() as i64).view(p.size().as_slice());
                view.copy_(p);
                let mut handle = p.shallow_clone();
                handle.set_data(&view);
            }
        });
        FlatSgd { params, offsets, flat, momentum_buffer: None, mask: None, momentum, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Per-parameter pieces laid out as in `flat`, zeros in the padding.
    fn flat_like(&self, piece: impl Fn(usize, &Tensor) -> Tensor) -> Tensor {
        // padding pieces are views of one small zero tensor: no allocation, no kernel per piece
        let zeros = Tensor::zeros([ALIGN_ELEMENTS], (Kind::Float, self.flat.device()));
        let mut parts = Vec::with_capacity(2 * self.params.len());
        let mut end = 0;
        for (i, (p, &offset)) in self.params.iter().zip(&self.offsets).enumerate() {
            if offset > end {
                parts.push(zeros.narrow(0, 0, offset - end));
            }
            parts.push(piece(i, p));
            end = offset + p.numel() as i64;
        }
        Tensor::cat(&parts, 0)
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.grad()).collect();
            if self.mask.is_none() {
                self.mask = Some(self.flat_like(|i, p| Tensor::full([p.numel() as i64], if grads[i].defined() { 1.0 } else { 0.0 }, (Kind::Float, p.device()))));
            }
            let mask = self.mask.as_ref().map(|m| m.shallow_clone()).unwrap_or_else(|| self.flat.ones_like());
            let flat_grads = self.flat_like(|i, p| if grads[i].defined() { grads[i].to_kind(Kind::Float).view([-1]) } else { Tensor::zeros([p.numel() as i64], (Kind::Float, p.device())) });
            let mut d = flat_grads + &self.flat * (&mask * self.weight_decay);
            if self.momentum != 0.0 {
                d = match self.momentum_buffer.take() {
                    None => d,
                    Some(buffer) => buffer * self.momentum + d,
                };
                self.momentum_buffer = Some(d.shallow_clone());
            }
            let _ = self.flat.f_sub_(&(d * mask * lr));
        });
    }

    /// The momentum buffer over the parameters' elements in order, without the alignment padding
    /// (None before the first step), for checkpoints.
    pub fn momentum_buffer(&self) -> Option<Tensor> {
        let buffer = self.momentum_buffer.as_ref()?;
        let parts: Vec<Tensor> = self.params.iter().zip(&self.offsets).map(|(p, &o)| buffer.narrow(0, o, p.numel() as i64)).collect();
        Some(Tensor::cat(&parts, 0))
    }

    /// Restores a buffer from [`FlatSgd::momentum_buffer`]; one of another length (another network)
    /// is an error.
    pub fn set_momentum_buffer(&mut self, buffer: Option<Tensor>) -> Result<(), String> {
        let Some(compact) = buffer else {
            self.momentum_buffer = None;
            return Ok(());
        };
        if compact.numel() as i64 != self.parameter_count() {
            return Err(format!("the momentum buffer has {} elements, the network {}", compact.numel(), self.parameter_count()));
        }
        let full = self.flat.zeros_like();
        let mut start = 0;
        tch::no_grad(|| {
            for (p, &o) in self.params.iter().zip(&self.offsets) {
                let n = p.numel() as i64;
                full.narrow(0, o, n).copy_(&compact.narrow(0, start, n));
                start += n;
            }
        });
        self.momentum_buffer = Some(full);
        Ok(())
    }

    /// Trainable elements (the padding not counted).
    pub fn parameter_count(&self) -> i64 {
        self.params.iter().map(|p| p.numel() as i64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_sgd_update() {
        // one parameter w = [1, 2], loss = sum(w * [3, 4]) → grad [3, 4]
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut opt = FlatSgd::new(vec![w.shallow_clone()], 0.9, 0.1);
        for _ in 0..2 {
            opt.zero_grad();
            (&w * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
            opt.step(0.5);
        }
        // step 1: d = g + 0.1 w = [3.1, 4.2]; w = [1, 2] - 0.5 d = [-0.55, -0.1]
        // step 2: d = [3, 4] + 0.1 w = [2.945, 3.99]; buf = 0.9 [3.1, 4.2] + d = [5.735, 7.77]
        //         w = [-0.55, -0.1] - 0.5 buf = [-3.4175, -3.985]
        let v: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
        assert!((v[0] + 3.4175).abs() < 1e-5 && (v[1] + 3.985).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn parameters_start_aligned_and_the_momentum_buffer_round_trips_without_padding() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32, 5.0]).set_requires_grad(true);
        let mut opt = FlatSgd::new(vec![a.shallow_clone(), b.shallow_clone()], 0.9, 0.0);
        assert_eq!(opt.parameter_count(), 5);
        assert_eq!(opt.offsets, vec![0, ALIGN_ELEMENTS]);
        opt.zero_grad();
        ((&a * 2.0).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float)).backward();
        opt.step(0.1);
        assert_eq!(Vec::<f32>::try_from(&b.detach()).unwrap(), vec![3.7, 4.7]);
        let saved = opt.momentum_buffer().expect("a step was taken");
        assert_eq!(Vec::<f32>::try_from(&saved).unwrap(), vec![2.0, 2.0, 2.0, 3.0, 3.0]);
        let mut restored = FlatSgd::new(vec![a.detach().copy().set_requires_grad(true), b.detach().copy().set_requires_grad(true)], 0.9, 0.0);
        restored.set_momentum_buffer(Some(saved.shallow_clone())).unwrap();
        assert!(restored.set_momentum_buffer(Some(Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)))).unwrap_err().contains("4 elements"));
        assert_eq!(Vec::<f32>::try_from(&restored.momentum_buffer().unwrap()).unwrap(), Vec::<f32>::try_from(&saved).unwrap());
    }
}
