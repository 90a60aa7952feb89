//! Building blocks of the polar-BEV network, with parameters registered under the names PyTorch's
//! modules give them (`conv1.0.weight`, `conv1.1.running_mean`, ...), so reference `state_dict`s load
//! as they are.
//!
//! Initialisation follows PyTorch's defaults (Kaiming-uniform with a = √5 for convolutions and linear
//! layers, ones and zeros for batch norm), which matters only when training from scratch.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// `U(−1/√fan_in, 1/√fan_in)`, PyTorch's default for weights (kaiming_uniform, a = √5) and biases.
fn default_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A parameter in the activations' precision: mixed-precision training keeps float32 master weights
/// and runs the layers in bfloat16 (the cast is differentiable, so gradients reach the master copy).
fn cast(parameter: &Tensor, like: &Tensor) -> Tensor {
    if parameter.kind() == like.kind() {
        parameter.shallow_clone()
    } else {
        parameter.to_kind(like.kind())
    }
}

/// `nn.Conv2d`.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    padding: [i64; 2],
}

impl Conv2d {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64, kernel: i64, padding: [i64; 2], bias: bool) -> Self {
        let fan_in = in_ch * kernel * kernel;
        let weight = p.var("weight", &[out_ch, in_ch, kernel, kernel], default_uniform(fan_in));
        let bias = bias.then(|| p.var("bias", &[out_ch], default_uniform(fan_in)));
        Conv2d { weight, bias, padding }
    }

    /// This convolution followed by `bn` (inference), as one convolution in `kind`: exact, since
    /// batch norm with running statistics is per-channel affine.
    pub fn folded_with(&self, bn: &BatchNorm, kind: Kind) -> Conv2d {
        let (weight, bias) = fold_into_outputs(&self.weight, self.bias.as_ref(), bn, kind);
        Conv2d { weight, bias: Some(bias), padding: self.padding }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (mut weight, mut bias) = (cast(&self.weight, x), self.bias.as_ref().map(|b| cast(b, x)));
        let out_ch = weight.size()[0];
        // cuDNN has no tensor-core kernel for fewer than 8 output channels and falls back to a
        // legacy one (about 1 ms for the gates' 32 → 2 convolution at 480 × 360): pad with zero
        // filters and drop their outputs
        let padded = x.device().is_cuda() && out_ch < MIN_TENSOR_CORE_CHANNELS;
        if padded {
            let extra = MIN_TENSOR_CORE_CHANNELS - out_ch;
            let mut shape = weight.size();
            shape[0] = extra;
            let zeros = Tensor::zeros(shape.as_slice(), (weight.kind(), weight.device()));
            weight = Tensor::cat(&[weight, zeros], 0);
            bias = bias.map(|b| Tensor::cat(&[b.shallow_clone(), Tensor::zeros([extra], (b.kind(), b.device()))], 0));
        }
        let y = x.conv2d(&weight, bias.as_ref(), [1, 1], self.padding, [1, 1], 1);
        if padded {
            y.narrow(1, 0, out_ch)
        } else {
            y
        }
    }
}

/// Output channels below which a CUDA convolution is padded with zero filters.
const MIN_TENSOR_CORE_CHANNELS: i64 = 8;

/// `nn.Linear`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(p: &Path, in_dim: i64, out_dim: i64) -> Self {
        Linear { weight: p.var("weight", &[out_dim, in_dim], default_uniform(in_dim)), bias: p.var("bias", &[out_dim], default_uniform(in_dim)) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&cast(&self.weight, x), Some(&cast(&self.bias, x)))
    }

    /// This layer followed by `bn` (inference), as one layer in `kind`.
    pub fn folded_with(&self, bn: &BatchNorm, kind: Kind) -> Linear {
        let (weight, bias) = fold_into_outputs(&self.weight, Some(&self.bias), bn, kind);
        Linear { weight, bias }
    }

    /// `bn` (inference) followed by this layer, as one layer in `kind`: `W (s·x + t) + b` is
    /// `(W diag s) x + (W t + b)`.
    pub fn after(&self, bn: &BatchNorm, kind: Kind) -> Linear {
        let (scale, shift) = bn.affine();
        let weight = self.weight.detach().to_kind(Kind::Float);
        let bias = self.bias.detach().to_kind(Kind::Float) + weight.mv(&shift);
        Linear { weight: (weight * scale.view([1, -1])).to_kind(kind), bias: bias.to_kind(kind) }
    }
}

/// `nn.BatchNorm1d` / `nn.BatchNorm2d` (eps 1e-5, momentum 0.1), running statistics included.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
}

impl BatchNorm {
    pub fn new(p: &Path, channels: i64) -> Self {
        BatchNorm {
            weight: p.var("weight", &[channels], Init::Const(1.0)),
            bias: p.var("bias", &[channels], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            num_batches_tracked: p.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, p.device())), false),
        }
    }

    /// In training mode the batch statistics are used and the running ones updated in place.
    ///
    /// Training never uses cuDNN's batch norm: on channels-last float32 input at 8 × 480 × 360 it
    /// fails on the H100 (CUDNN_STATUS_EXECUTION_FAILED), and libtorch's own channels-last kernels
    /// are the ones bf16 runs anyway.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            let _guard = tch::no_grad_guard();
            let mut count = self.num_batches_tracked.shallow_clone();
            let _ = count.f_add_scalar_(1);
        }
        Tensor::batch_norm(x, Some(&self.weight), Some(&self.bias), Some(&self.running_mean), Some(&self.running_var), train, 0.1, BATCH_NORM_EPS, !train)
    }

    /// The inference-mode transform as a per-channel `scale · x + shift`, in float32.
    pub fn affine(&self) -> (Tensor, Tensor) {
        let f = |t: &Tensor| t.detach().to_kind(Kind::Float);
        let scale = f(&self.weight) / (f(&self.running_var) + BATCH_NORM_EPS).sqrt();
        let shift = f(&self.bias) - f(&self.running_mean) * &scale;
        (scale, shift)
    }
}

const BATCH_NORM_EPS: f64 = 1e-5;

/// Weight and bias of a layer whose outputs are followed by `bn` in inference: every output channel
/// scaled, the shift added to the bias. `weight` has output channels first; the results are in
/// `kind`.
pub fn fold_into_outputs(weight: &Tensor, bias: Option<&Tensor>, bn: &BatchNorm, kind: Kind) -> (Tensor, Tensor) {
    let (scale, shift) = bn.affine();
    let mut shape = vec![1i64; weight.dim()];
    shape[0] = -1;
    let weight = weight.detach().to_kind(Kind::Float) * scale.view(shape.as_slice());
    let bias = match bias {
        Some(b) => b.detach().to_kind(Kind::Float) * &scale + shift,
        None => shift,
    };
    (weight.to_kind(kind), bias.to_kind(kind))
}

/// Pads the last (azimuth) dimension circularly by one column on each side. One concatenation
/// (rather than `pad(.., "circular")`, which copies slice by slice) keeps a channels-last input
/// channels-last and back-propagates as one split.
pub fn ring_pad(x: &Tensor) -> Tensor {
    let w = x.size()[3];
    Tensor::cat(&[x.narrow(3, w - 1, 1), x.shallow_clone(), x.narrow(3, 0, 1)], 3)
}

/// The same values in channels-last memory order (NHWC strides, NCHW shape). Training runs the
/// U-Net this way: batch norm then uses its channels-last kernels, which split each channel's
/// reduction over many blocks instead of one (10× faster at 8 × 480 × 360), and cuDNN convolves
/// without transposing.
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Conv3×3 (zero padding along range, circular along azimuth) → BN → LeakyReLU(0.01):
/// `conv1.0`, `conv1.1` of MotionBEV's `single_conv_circular`, and one half of `double_conv_circular`.
///
/// After [`RingConvBnAct::fold_batch_norm`], inference runs one convolution with the batch norm
/// folded into it (training still uses the separate layers).
#[derive(Debug)]
pub struct RingConvBnAct {
    conv: Conv2d,
    bn: BatchNorm,
    folded: Option<Conv2d>,
}

impl RingConvBnAct {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64) -> Self {
        RingConvBnAct { conv: Conv2d::new(&(p / "0"), in_ch, out_ch, 3, [1, 0], true), bn: BatchNorm::new(&(p / "1"), out_ch), folded: None }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.folded {
            Some(conv) if !train => conv.forward(&ring_pad(x)).leaky_relu(),
            _ => self.bn.forward(&self.conv.forward(&ring_pad(x)), train).leaky_relu(),
        }
    }

    /// Folds the batch norm into the convolution for inference, in `kind`.
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.folded = Some(self.conv.folded_with(&self.bn, kind));
    }
}

/// `double_conv_circular`: two [`RingConvBnAct`] as `conv1` and `conv2`.
#[derive(Debug)]
pub struct DoubleRingConv {
    conv1: RingConvBnAct,
    conv2: RingConvBnAct,
}

impl DoubleRingConv {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64) -> Self {
        DoubleRingConv { conv1: RingConvBnAct::new(&(p / "conv1"), in_ch, out_ch), conv2: RingConvBnAct::new(&(p / "conv2"), out_ch, out_ch) }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.conv2.forward(&self.conv1.forward(x, train), train)
    }

    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.conv1.fold_batch_norm(kind);
        self.conv2.fold_batch_norm(kind);
    }
}

/// `inconv` with input batch norm: `conv.0` = BatchNorm2d(in), `conv.1` = double_conv_circular.
#[derive(Debug)]
pub struct InConv {
    norm: BatchNorm,
    conv: DoubleRingConv,
}

impl InConv {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64) -> Self {
        let p = p / "conv";
        InConv { norm: BatchNorm::new(&(&p / "0"), in_ch), conv: DoubleRingConv::new(&(&p / "1"), in_ch, out_ch) }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.conv.forward(&self.norm.forward(x, train), train)
    }

    /// Folds the convolutions' batch norms. The input batch norm stays: the convolution after it
    /// pads the range axis with zeros, which a folded shift would not see at the first and last rows.
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.conv.fold_batch_norm(kind);
    }
}

/// `down`: max-pool 2 (`mpconv.0`) then double_conv_circular (`mpconv.1`).
#[derive(Debug)]
pub struct Down {
    conv: DoubleRingConv,
}

impl Down {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64) -> Self {
        Down { conv: DoubleRingConv::new(&(p / "mpconv" / "1"), in_ch, out_ch) }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.conv.forward(&x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false), train)
    }

    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.conv.fold_batch_norm(kind);
    }
}

/// DySample (`lp` style, 4 groups, scale 2, no dynamic scope): a learned per-pixel sampling offset
/// (`offset`, 1×1 conv to 32 channels, ×0.25) added to the sub-pixel grid `init_pos` (a buffer read
/// from the checkpoint), then bilinear `grid_sample` with border padding.
#[derive(Debug)]
pub struct DySample {
    offset: Conv2d,
    pub init_pos: Tensor,
}

const DYSAMPLE_GROUPS: i64 = 4;
const DYSAMPLE_SCALE: i64 = 2;

impl DySample {
    pub fn new(p: &Path, channels: i64) -> Self {
        let out = 2 * DYSAMPLE_GROUPS * DYSAMPLE_SCALE * DYSAMPLE_SCALE;
        let offset_path = p / "offset";
        let offset = Conv2d {
            weight: offset_path.var("weight", &[out, channels, 1, 1], Init::Randn { mean: 0.0, stdev: 0.001 }),
            bias: Some(offset_path.var("bias", &[out], Init::Const(0.0))),
            padding: [0, 0],
        };
        // ±0.25 sub-pixel positions, x then y, repeated per group (the reference's `_init_pos`)
        let h = [-0.25f32, 0.25];
        let mut init = Vec::with_capacity(out as usize);
        for axis in 0..2 {
            for _ in 0..DYSAMPLE_GROUPS {
                for i in 0..2 {
                    for j in 0..2 {
                        init.push(if axis == 0 { h[j] } else { h[i] });
                    }
                }
            }
        }
        let init_pos = p.add("init_pos", Tensor::from_slice(&init).view([1, out, 1, 1]).to_device(p.device()), false);
        DySample { offset, init_pos }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, _, h, w) = x.size4().expect("DySample input is 4-D");
        let (kind, device) = (x.kind(), x.device());
        // reshape, not view: in training the offsets are channels-last
        let offset = (self.offset.forward(x) * 0.25 + &self.init_pos.to_kind(kind)).reshape([b, 2, -1, h, w]);
        let cx = (Tensor::arange(w, (kind, device)) + 0.5).view([1, w]).expand([h, w], false);
        let cy = (Tensor::arange(h, (kind, device)) + 0.5).view([h, 1]).expand([h, w], false);
        let coords = Tensor::stack(&[cx, cy], 0).view([1, 2, 1, h, w]);
        // made on the device: an upload would synchronise the stream in the middle of the network
        let normalizer = Tensor::cat(&[Tensor::full([1], w as f64, (kind, device)), Tensor::full([1], h as f64, (kind, device))], 0).view([1, 2, 1, 1, 1]);
        let coords = (coords + offset) * 2.0 / normalizer - 1.0;
        let coords = coords
            .reshape([b, -1, h, w])
            .pixel_shuffle(DYSAMPLE_SCALE)
            .reshape([b, 2, -1, DYSAMPLE_SCALE * h, DYSAMPLE_SCALE * w])
            .permute([0, 2, 3, 4, 1])
            .contiguous()
            .flatten(0, 1);
        // grid_sampler: interpolation 0 = bilinear, padding 1 = border, align_corners = false
        x.reshape([b * DYSAMPLE_GROUPS, -1, h, w]).grid_sampler(&coords, 0, 1, false).view([b, -1, DYSAMPLE_SCALE * h, DYSAMPLE_SCALE * w])
    }
}

/// `nn.ConvTranspose2d(C, C, 2, stride=2)`: MotionBEV's up-sampler.
#[derive(Debug)]
pub struct TransposedConv {
    weight: Tensor,
    bias: Tensor,
}

impl TransposedConv {
    pub fn new(p: &Path, channels: i64) -> Self {
        // PyTorch computes fan_in of a transposed conv from weight.size(1) (out channels) × kernel
        let fan_in = channels * 4;
        TransposedConv { weight: p.var("weight", &[channels, channels, 2, 2], default_uniform(fan_in)), bias: p.var("bias", &[channels], default_uniform(fan_in)) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(&cast(&self.weight, x), Some(&cast(&self.bias, x)), [2, 2], [0, 0], [0, 0], 1, [1, 1])
    }
}

/// The decoder's ×2 up-sampler: DySample (KDMOS) or a transposed convolution (MotionBEV).
#[derive(Debug)]
pub enum Upsampler {
    DySample(DySample),
    Transposed(TransposedConv),
}

/// DropBlock2D(block 7): drops square blocks of a feature map in training (identity in inference),
/// rescaling the kept activations, as the `dropblock` package does.
#[derive(Debug, Clone, Copy)]
pub struct DropBlock {
    pub block: i64,
    pub drop_prob: f64,
}

impl DropBlock {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if !train || self.drop_prob <= 0.0 {
            return x.shallow_clone();
        }
        let (b, _, h, w) = x.size4().expect("DropBlock input is 4-D");
        let gamma = self.drop_prob / (self.block * self.block) as f64;
        let seeds = Tensor::rand([b, 1, h, w], (Kind::Float, x.device())).lt(gamma).to_kind(Kind::Float);
        let mut blocks = seeds.max_pool2d([self.block, self.block], [1, 1], [self.block / 2, self.block / 2], [1, 1], false);
        if self.block % 2 == 0 {
            blocks = blocks.narrow(2, 0, h).narrow(3, 0, w);
        }
        let keep = -blocks + 1.0;
        let scale = keep.numel() as f64 / keep.sum(Kind::Float).clamp_min(1.0);
        x * keep.to_kind(x.kind()) * scale.to_kind(x.kind())
    }
}

/// `up`: up-sample, zero-pad to the skip's size, concatenate `[skip, up]`, double_conv_circular,
/// DropBlock.
#[derive(Debug)]
pub struct Up {
    up: Upsampler,
    conv: DoubleRingConv,
    dropblock: DropBlock,
}

impl Up {
    pub fn new(p: &Path, in_ch: i64, out_ch: i64, dysample: bool, drop_prob: f64) -> Self {
        let up_path = p / "up";
        let up = if dysample { Upsampler::DySample(DySample::new(&up_path, in_ch / 2)) } else { Upsampler::Transposed(TransposedConv::new(&up_path, in_ch / 2)) };
        Up { up, conv: DoubleRingConv::new(&(p / "conv"), in_ch, out_ch), dropblock: DropBlock { block: 7, drop_prob } }
    }

    /// `nhwc`: the U-Net runs channels-last (see [`channels_last`]).
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, train: bool, nhwc: bool) -> Tensor {
        let x1 = match &self.up {
            // grid_sample writes NCHW; the concatenation below keeps channels-last only if both are
            Upsampler::DySample(d) if nhwc => channels_last(&d.forward(x1)),
            Upsampler::DySample(d) => d.forward(x1),
            Upsampler::Transposed(t) => t.forward(x1),
        };
        let dy = x2.size()[2] - x1.size()[2];
        let dx = x2.size()[3] - x1.size()[3];
        let x1 = if dx != 0 || dy != 0 { x1.pad([dx / 2, dx - dx / 2, dy / 2, dy - dy / 2], "constant", Some(0.0)) } else { x1 };
        let x = Tensor::cat(&[x2, &x1], 1);
        self.dropblock.forward(&self.conv.forward(&x, train), train)
    }
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.conv.fold_batch_norm(kind);
    }
}

/// Motion-guided attention (`attention_module_MGA_tmc`): a spatial map from the motion features
/// weights the appearance features, then a channel re-weighting; residual connection.
#[derive(Debug)]
pub struct MotionGuidedAttention {
    channel_wise: Conv2d,
    spatial: Conv2d,
}

impl MotionGuidedAttention {
    pub fn new(p: &Path, channel_a: i64, channel_m: i64) -> Self {
        MotionGuidedAttention {
            channel_wise: Conv2d::new(&(p / "conv1x1_channel_wise"), channel_a, channel_a, 1, [0, 0], true),
            spatial: Conv2d::new(&(p / "conv1x1_spatial"), channel_m, 1, 1, [0, 0], true),
        }
    }

    pub fn forward(&self, appearance: &Tensor, motion: &Tensor) -> Tensor {
        let spatial = self.spatial.forward(motion).sigmoid() * appearance;
        let vector = self.channel_wise.forward(&spatial.adaptive_avg_pool2d([1, 1]));
        let channels = vector.size()[1] as f64;
        let vector = vector.softmax(1, vector.kind()) * channels;
        &spatial * vector + appearance
    }
}

/// The co-attention gate (`CAG`, the paper's AMCM). `motion_channel_attention` and
/// `motion_spatial_attention` exist in the reference module and its `state_dict` but are never
/// called; they are kept as parameters so checkpoints load strictly.
#[derive(Debug)]
pub struct CoAttentionGate {
    fuse_feature1: RingConvBnAct,
    fuse_feature2: Conv2d,
    attention: MotionGuidedAttention,
    _unused: Vec<Tensor>,
}

impl CoAttentionGate {
    pub fn new(p: &Path, channel_a: i64, channel_m: i64) -> Self {
        let channel_attention = p / "motion_channel_attention";
        let reduced = channel_m / 8;
        let unused = vec![
            (&channel_attention / "fc1").var("weight", &[reduced, channel_m, 1, 1], default_uniform(channel_m)),
            (&channel_attention / "fc2").var("weight", &[channel_m, reduced, 1, 1], default_uniform(reduced)),
            (p / "motion_spatial_attention" / "conv1").var("weight", &[1, 2, 3, 3], default_uniform(18)),
        ];
        CoAttentionGate {
            fuse_feature1: RingConvBnAct::new(&(p / "fuse_feature1" / "conv1"), channel_a + channel_m, 32),
            fuse_feature2: Conv2d::new(&(p / "fuse_feature2"), 32, 2, 3, [1, 0], true),
            attention: MotionGuidedAttention::new(&(p / "attention_module"), channel_a, channel_m),
            _unused: unused,
        }
    }

    pub fn forward(&self, appearance: &Tensor, motion: &Tensor, train: bool) -> Tensor {
        let fused = self.fuse_feature1.forward(&Tensor::cat(&[appearance, motion], 1), train);
        let gates = self.fuse_feature2.forward(&ring_pad(&fused)).sigmoid().adaptive_avg_pool2d([1, 1]);
        let gated_a = gates.narrow(1, 0, 1) * appearance;
        let gated_m = gates.narrow(1, 1, 1) * motion;
        self.attention.forward(&gated_a, &gated_m)
    }
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        self.fuse_feature1.fold_batch_norm(kind);
    }
}
