//! The KDMOS training loss (`train_SemanticKITTI.py`, spec §4.3):
//!
//! `loss = Lovász-softmax(voxels) + CE(voxels) + kd_weight · (3 · NCKD + 1 · TCKD)`
//!
//! * Voxel terms over labelled voxels (label 0 is ignored; empty voxels carry 0 and are ignored too,
//!   so computing them on occupied voxels only gives the reference's value exactly).
//! * NCKD, the non-target distillation: per-point KL between teacher and student distributions over
//!   the non-target classes at temperature T (the target logit pushed down by 1000), weighted by the
//!   point's class weight `[0, 1.0716, 22.0882, 421.3364]` and normalised by the sum of weights.
//! * TCKD, the target distillation: KL of the binary (target, rest) distributions, on ground-truth
//!   moving points only, normalised by their count; a batch without moving points has no TCKD term
//!   (the reference divides by zero and gets NaN).
//! * No T² factor, 1e-8 added exactly where the reference adds it.

use tch::{Kind, Reduction, Tensor};

/// Per-class point weights: unlabelled, static, movable, moving.
pub const CLASS_WEIGHTS: [f64; 4] = [0.0, 1.0716, 22.0882, 421.3364];
pub const MOVING_CLASS: i64 = 3;

/// The parts of one step's loss (scalars on the device).
pub struct LossTerms {
    pub lovasz: Tensor,
    pub cross_entropy: Tensor,
    pub nckd: Option<Tensor>,
    pub tckd: Option<Tensor>,
    pub total: Tensor,
}

/// Lovász-softmax over `probabilities [V, C]` and `labels [V]` (int64), classes present only,
/// ignoring label `ignore`.
pub fn lovasz_softmax(probabilities: &Tensor, labels: &Tensor, ignore: i64) -> Tensor {
    let valid = labels.ne(ignore).nonzero().squeeze_dim(1);
    let probabilities = probabilities.index_select(0, &valid);
    let labels = labels.index_select(0, &valid);
    if labels.numel() == 0 {
        return probabilities.sum(Kind::Float) * 0.0;
    }
    let classes = probabilities.size()[1];
    let mut losses = Vec::new();
    for c in 0..classes {
        let fg = labels.eq(c).to_kind(Kind::Float);
        if fg.sum(Kind::Float).double_value(&[]) == 0.0 {
            continue;
        }
        let errors = (&fg - probabilities.select(1, c)).abs();
        let (sorted, perm) = errors.sort(0, true);
        let fg_sorted = fg.index_select(0, &perm);
        losses.push(sorted.dot(&lovasz_grad(&fg_sorted)));
    }
    if losses.is_empty() {
        return probabilities.sum(Kind::Float) * 0.0;
    }
    Tensor::stack(&losses, 0).mean(Kind::Float)
}

/// Gradient of the Lovász extension with respect to sorted errors (Berman et al., Alg. 1).
fn lovasz_grad(fg_sorted: &Tensor) -> Tensor {
    let p = fg_sorted.size()[0];
    let gts = fg_sorted.sum(Kind::Float);
    let intersection = &gts - fg_sorted.cumsum(0, Kind::Float);
    let union = &gts + (-fg_sorted + 1.0).cumsum(0, Kind::Float);
    let jaccard = -(intersection / union) + 1.0;
    if p > 1 {
        let head = jaccard.narrow(0, 0, 1);
        let tail = jaccard.narrow(0, 1, p - 1) - jaccard.narrow(0, 0, p - 1);
        Tensor::cat(&[head, tail], 0)
    } else {
        jaccard
    }
}

/// Cross-entropy over voxels, ignoring label `ignore`, mean over the rest.
pub fn voxel_cross_entropy(logits: &Tensor, labels: &Tensor, ignore: i64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, ignore, 0.0)
}

/// One-hot mask of the target class, `[N, C]` float.
fn target_mask(labels: &Tensor, classes: i64) -> Tensor {
    labels.one_hot(classes).to_kind(Kind::Float)
}

/// `kl_div(input, target, reduction='none')` = target · (log target − input).
fn kl_elementwise(log_input: &Tensor, target: &Tensor) -> Tensor {
    target * (target.log() - log_input)
}

/// Weighted non-target KD (NCKD), `None` when no point has a non-zero weight.
pub fn nckd(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> Option<Tensor> {
    let classes = student.size()[1];
    let weights = Tensor::from_slice(&CLASS_WEIGHTS).to_kind(Kind::Float).to_device(student.device()).index_select(0, labels).unsqueeze(1);
    let weight_sum = weights.sum(Kind::Float);
    if weight_sum.double_value(&[]) <= 0.0 {
        return None;
    }
    let gt = target_mask(labels, classes) * 1000.0;
    let p_teacher = (teacher / temperature - &gt).softmax(1, Kind::Float) + 1e-8;
    let log_student = (student / temperature - &gt).log_softmax(1, Kind::Float) + 1e-8;
    let per_element = kl_elementwise(&log_student, &p_teacher) * &weights;
    Some(per_element.sum(Kind::Float) / weight_sum)
}

/// Target KD (TCKD) on ground-truth moving points, `None` when the batch has none.
pub fn tckd(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> Option<Tensor> {
    let moving = labels.eq(MOVING_CLASS).to_kind(Kind::Float).unsqueeze(1);
    let count = moving.sum(Kind::Float);
    if count.double_value(&[]) == 0.0 {
        return None;
    }
    let classes = student.size()[1];
    let gt = target_mask(labels, classes);
    let other = -&gt + 1.0;
    let binary = |p: &Tensor| Tensor::cat(&[(p * &gt).sum_dim_intlist(1, true, Kind::Float), (p * &other).sum_dim_intlist(1, true, Kind::Float)], 1);
    let p_student = binary(&((student / temperature).softmax(1, Kind::Float) + 1e-8));
    let p_teacher = binary(&((teacher / temperature).softmax(1, Kind::Float) + 1e-8));
    let per_element = kl_elementwise(&p_student.log(), &p_teacher) * moving;
    Some(per_element.sum(Kind::Float) / count)
}

/// The whole loss. `teacher` is `None` for a run without distillation (or `kd_weight` 0).
#[allow(clippy::too_many_arguments)]
pub fn kdmos_loss(
    voxel_logits: &Tensor,
    voxel_labels: &Tensor,
    point_logits: &Tensor,
    point_labels: &Tensor,
    teacher: Option<&Tensor>,
    kd_weight: f64,
    temperature: f64,
) -> LossTerms {
    let voxel_logits = voxel_logits.to_kind(Kind::Float);
    let lovasz = lovasz_softmax(&voxel_logits.softmax(1, Kind::Float), voxel_labels, 0);
    let cross_entropy = voxel_cross_entropy(&voxel_logits, voxel_labels, 0);
    let mut total = &lovasz + &cross_entropy;
    let (mut nckd_term, mut tckd_term) = (None, None);
    if let (Some(teacher), true) = (teacher, kd_weight != 0.0) {
        let student = point_logits.to_kind(Kind::Float);
        let teacher = teacher.to_kind(Kind::Float);
        nckd_term = nckd(&student, &teacher, point_labels, temperature);
        tckd_term = tckd(&student, &teacher, point_labels, temperature);
        let mut kd = Tensor::zeros([], (Kind::Float, student.device()));
        if let Some(n) = &nckd_term {
            kd = kd + n * 3.0;
        }
        if let Some(t) = &tckd_term {
            kd = kd + t;
        }
        total = total + kd * kd_weight;
    }
    LossTerms { lovasz, cross_entropy, nckd: nckd_term, tckd: tckd_term, total }
}
