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
    flat: Tensor,
    momentum_buffer: Option<Tensor>,
    /// 1 for parameters that receive gradients, 0 for the others (found at the first step).
    mask: Option<Tensor>,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl FlatSgd {
    /// Takes over `params` (float32, all on one device): their storage moves into one buffer.
    pub fn new(params: Vec<Tensor>, momentum: f64, weight_decay: f64) -> Self {
        let device = params.first().map(|p| p.device()).unwrap_or(tch::Device::Cpu);
        let total: i64 = params.iter().map(|p| p.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let mut offset = 0;
        tch::no_grad(|| {
            for p in &params {
                let n = p.numel() as i64;
                let mut view = flat.narrow(0, offset, n).view(p.size().as_slice());
                view.copy_(p);
                let mut handle = p.shallow_clone();
                handle.set_data(&view);
                offset += n;
            }
        });
        FlatSgd { params, flat, momentum_buffer: None, mask: None, momentum, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.grad()).collect();
            let mask = self.mask.get_or_insert_with(|| {
                let parts: Vec<Tensor> = grads
                    .iter()
                    .zip(&self.params)
                    .map(|(g, p)| Tensor::full([p.numel() as i64], if g.defined() { 1.0 } else { 0.0 }, (Kind::Float, p.device())))
                    .collect();
                Tensor::cat(&parts, 0)
            });
            let flat_grads: Vec<Tensor> = grads
                .iter()
                .zip(&self.params)
                .map(|(g, p)| if g.defined() { g.to_kind(Kind::Float).view([-1]) } else { Tensor::zeros([p.numel() as i64], (Kind::Float, p.device())) })
                .collect();
            let mask = mask.shallow_clone();
            let mut d = Tensor::cat(&flat_grads, 0) + &self.flat * (&mask * self.weight_decay);
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

    /// The momentum buffer (None before the first step), for checkpoints.
    pub fn momentum_buffer(&self) -> Option<&Tensor> {
        self.momentum_buffer.as_ref()
    }

    pub fn set_momentum_buffer(&mut self, buffer: Option<Tensor>) {
        self.momentum_buffer = buffer;
    }

    pub fn parameter_count(&self) -> i64 {
        self.flat.numel() as i64
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
}
