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
    /// With distillation: NCKD (0 when no point has a non-zero weight).
    pub nckd: Option<Tensor>,
    /// With distillation: TCKD (0 when the batch has no moving point).
    pub tckd: Option<Tensor>,
    /// With distillation: how many ground-truth moving points the batch has (TCKD's count).
    pub moving_points: Option<Tensor>,
    pub total: Tensor,
}

/// Lovász-softmax over `probabilities [V, C]` and `labels [V]` (int64), classes present only,
/// ignoring label `ignore`.
///
/// Computed without the host ever waiting for the device: instead of dropping ignored rows and
/// absent classes (which needs their counts on the host), ignored rows get error 0, so they sort
/// behind every row that contributes and add nothing, and absent classes are masked out of the mean.
/// The value is the reference's.
pub fn lovasz_softmax(probabilities: &Tensor, labels: &Tensor, ignore: i64) -> Tensor {
    let classes = probabilities.size()[1];
    let valid = labels.ne(ignore);
    let mut losses = Vec::with_capacity(classes as usize);
    let mut present = Vec::with_capacity(classes as usize);
    for c in 0..classes {
        let fg = labels.eq(c).logical_and(&valid).to_kind(Kind::Float);
        let errors = (&fg - probabilities.select(1, c)).abs().where_scalarother(&valid, 0.0);
        let (sorted, perm) = errors.sort(0, true);
        let fg_sorted = fg.index_select(0, &perm);
        losses.push(sorted.dot(&lovasz_grad(&fg_sorted)));
        present.push(fg.sum(Kind::Float).gt(0.0).to_kind(Kind::Float));
    }
    let (losses, present) = (Tensor::stack(&losses, 0), Tensor::stack(&present, 0));
    (losses * &present).sum(Kind::Float) / present.sum(Kind::Float).clamp_min(1.0)
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

/// Cross-entropy over voxels, ignoring label `ignore`, mean over the rest (0, not the reference's
/// NaN, when every voxel is ignored).
pub fn voxel_cross_entropy(logits: &Tensor, labels: &Tensor, ignore: i64) -> Tensor {
    let sum = logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, ignore, 0.0);
    mean_or_zero(&sum, &labels.ne(ignore).sum(Kind::Float))
}

/// One-hot mask of the target class, `[N, C]` float.
fn target_mask(labels: &Tensor, classes: i64) -> Tensor {
    labels.one_hot(classes).to_kind(Kind::Float)
}

/// `kl_div(input, target, reduction='none')` = target · (log target − input).
fn kl_elementwise(log_input: &Tensor, target: &Tensor) -> Tensor {
    target * (target.log() - log_input)
}

/// NCKD's weighted sum and its normaliser (the sum of point weights), as device scalars.
fn nckd_parts(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let classes = student.size()[1];
    let weights = Tensor::from_slice(&CLASS_WEIGHTS).to_kind(Kind::Float).to_device(student.device()).index_select(0, labels).unsqueeze(1);
    let gt = target_mask(labels, classes) * 1000.0;
    let p_teacher = (teacher / temperature - &gt).softmax(1, Kind::Float) + 1e-8;
    let log_student = (student / temperature - &gt).log_softmax(1, Kind::Float) + 1e-8;
    let per_element = kl_elementwise(&log_student, &p_teacher) * &weights;
    (per_element.sum(Kind::Float), weights.sum(Kind::Float))
}

/// TCKD's sum over moving points and their count, as device scalars.
fn tckd_parts(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let moving = labels.eq(MOVING_CLASS).to_kind(Kind::Float).unsqueeze(1);
    let classes = student.size()[1];
    let gt = target_mask(labels, classes);
    let other = -&gt + 1.0;
    let binary = |p: &Tensor| Tensor::cat(&[(p * &gt).sum_dim_intlist(1, true, Kind::Float), (p * &other).sum_dim_intlist(1, true, Kind::Float)], 1);
    let p_student = binary(&((student / temperature).softmax(1, Kind::Float) + 1e-8));
    let p_teacher = binary(&((teacher / temperature).softmax(1, Kind::Float) + 1e-8));
    let per_element = kl_elementwise(&p_student.log(), &p_teacher) * &moving;
    (per_element.sum(Kind::Float), moving.sum(Kind::Float))
}

/// `sum / count`, or 0 where `count` is 0 (then `sum` is 0 too: every term was weighted by 0).
fn mean_or_zero(sum: &Tensor, count: &Tensor) -> Tensor {
    sum / count.clamp_min(1e-12)
}

/// Weighted non-target KD (NCKD), `None` when no point has a non-zero weight.
pub fn nckd(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> Option<Tensor> {
    let (sum, weight_sum) = nckd_parts(student, teacher, labels, temperature);
    (weight_sum.double_value(&[]) > 0.0).then(|| sum / weight_sum)
}

/// Target KD (TCKD) on ground-truth moving points, `None` when the batch has none.
pub fn tckd(student: &Tensor, teacher: &Tensor, labels: &Tensor, temperature: f64) -> Option<Tensor> {
    let (sum, count) = tckd_parts(student, teacher, labels, temperature);
    (count.double_value(&[]) > 0.0).then(|| sum / count)
}

/// The whole loss. `teacher` is `None` for a run without distillation (or `kd_weight` 0).
///
/// Nothing here waits for the device, so a training step queues its forward, loss and backward
/// without a pause. With distillation, `nckd` and `tckd` are always there; a batch without moving
/// points has a TCKD of exactly 0 (it adds nothing, the reference's NaN avoided) and
/// `moving_points` 0, which is how a log tells that the term was skipped.
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
    let (mut nckd_term, mut tckd_term, mut moving_points) = (None, None, None);
    if let (Some(teacher), true) = (teacher, kd_weight != 0.0) {
        let student = point_logits.to_kind(Kind::Float);
        let teacher = teacher.to_kind(Kind::Float);
        let (nckd_sum, weight_sum) = nckd_parts(&student, &teacher, point_labels, temperature);
        let (tckd_sum, moving) = tckd_parts(&student, &teacher, point_labels, temperature);
        let (n, t) = (mean_or_zero(&nckd_sum, &weight_sum), mean_or_zero(&tckd_sum, &moving));
        total = total + (&n * 3.0 + &t) * kd_weight;
        (nckd_term, tckd_term, moving_points) = (Some(n), Some(t), Some(moving));
    }
    LossTerms { lovasz, cross_entropy, nckd: nckd_term, tckd: tckd_term, moving_points, total }
}
