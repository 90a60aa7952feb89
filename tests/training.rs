//! Training: the KDMOS loss terms against values computed by hand, training that lowers the loss,
//! exact resume from a checkpoint, and teacher logits in the KDMOS on-disk format.

mod common;

use common::*;
use kdseg::train::loss::{self, CLASS_WEIGHTS};
use tch::{Device, Kind, Tensor};

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// NCKD and TCKD written out from the reference's formulas, in f64.
fn reference_kd(student: &[[f64; 4]], teacher: &[[f64; 4]], labels: &[usize], t: f64) -> (f64, Option<f64>) {
    let (mut nckd, mut wsum) = (0.0, 0.0);
    let (mut tckd, mut moving) = (0.0, 0.0);
    for i in 0..labels.len() {
        let y = labels[i];
        let w = CLASS_WEIGHTS[y];
        let masked = |z: &[f64; 4]| -> Vec<f64> { (0..4).map(|c| z[c] / t - if c == y { 1000.0 } else { 0.0 }).collect() };
        let pt: Vec<f64> = softmax(&masked(&teacher[i])).iter().map(|p| p + 1e-8).collect();
        // log_softmax, computed stably (the target is pushed down by 1000)
        let zs = masked(&student[i]);
        let m = zs.iter().cloned().fold(f64::MIN, f64::max);
        let log_sum = zs.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let log_q: Vec<f64> = zs.iter().map(|v| v - m - log_sum + 1e-8).collect();
        for c in 0..4 {
            nckd += w * pt[c] * (pt[c].ln() - log_q[c]);
        }
        wsum += w;
        if y == 3 {
            let bin = |z: &[f64; 4]| {
                let p: Vec<f64> = softmax(&z.map(|v| v / t)).iter().map(|p| p + 1e-8).collect();
                [p[y], (0..4).filter(|&c| c != y).map(|c| p[c]).sum::<f64>()]
            };
            let (bs, bt) = (bin(&student[i]), bin(&teacher[i]));
            for k in 0..2 {
                tckd += bt[k] * (bt[k].ln() - bs[k].ln());
            }
            moving += 1.0;
        }
    }
    (nckd / wsum, (moving > 0.0).then(|| tckd / moving))
}

fn tensor(rows: &[[f64; 4]]) -> Tensor {
    Tensor::from_slice(&rows.iter().flatten().map(|&v| v as f32).collect::<Vec<f32>>()).view([rows.len() as i64, 4])
}

#[test]
fn kd_terms_match_hand_computed_values() {
    let student = [[0.5, 2.0, -1.0, 0.3], [1.0, -0.5, 0.2, 2.5], [0.0, 0.1, 3.0, -2.0], [-1.0, 0.4, 0.9, 1.7]];
    let teacher = [[0.1, 3.0, -2.0, 0.0], [0.3, 0.2, -1.0, 4.0], [2.0, -1.0, 1.0, 0.5], [0.0, 0.0, 0.5, 3.0]];
    let labels = [1usize, 3, 2, 3];
    let (expected_nckd, expected_tckd) = reference_kd(&student, &teacher, &labels, 4.0);
    let y = Tensor::from_slice(&labels.map(|l| l as i64));
    let nckd = loss::nckd(&tensor(&student), &tensor(&teacher), &y, 4.0).unwrap().double_value(&[]);
    let tckd = loss::tckd(&tensor(&student), &tensor(&teacher), &y, 4.0).unwrap().double_value(&[]);
    assert!((nckd - expected_nckd).abs() < 1e-5 * (1.0 + expected_nckd.abs()), "nckd {nckd} vs {expected_nckd}");
    let expected_tckd = expected_tckd.unwrap();
    assert!((tckd - expected_tckd).abs() < 1e-5 * (1.0 + expected_tckd.abs()), "tckd {tckd} vs {expected_tckd}");
    assert!(nckd > 0.0 && tckd > 0.0);
}

#[test]
fn a_batch_without_moving_points_has_no_tckd_and_no_nan() {
    let student = [[0.5, 2.0, -1.0, 0.3], [0.0, 0.1, 3.0, -2.0], [0.2, 0.2, 0.2, 0.2]];
    let teacher = [[0.1, 3.0, -2.0, 0.0], [2.0, -1.0, 1.0, 0.5], [1.0, 0.0, 0.0, 0.0]];
    let labels = [1usize, 2, 0];
    let y = Tensor::from_slice(&labels.map(|l| l as i64));
    let (s, t) = (tensor(&student), tensor(&teacher));
    assert!(loss::tckd(&s, &t, &y, 4.0).is_none());
    let (expected_nckd, expected_tckd) = reference_kd(&student, &teacher, &labels, 4.0);
    assert!(expected_tckd.is_none());
    let nckd = loss::nckd(&s, &t, &y, 4.0).unwrap().double_value(&[]);
    assert!((nckd - expected_nckd).abs() < 1e-5 * (1.0 + expected_nckd));
    // the whole loss stays finite: KD = 3 · NCKD only
    let voxel_logits = tensor(&student);
    let terms = loss::kdmos_loss(&voxel_logits, &y, &voxel_logits, &y, Some(&t), 0.3, 4.0);
    let total = terms.total.double_value(&[]);
    let base = terms.lovasz.double_value(&[]) + terms.cross_entropy.double_value(&[]);
    assert!(total.is_finite());
    assert!((total - (base + 0.3 * 3.0 * nckd)).abs() < 1e-5, "{total} vs {base} + 0.9 · {nckd}");
    // points labelled 0 only: no NCKD either
    let zeros = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
    assert!(loss::nckd(&s, &t, &zeros, 4.0).is_none());
}

#[test]
fn lovasz_softmax_matches_a_hand_computation() {
    // two voxels of class 1 and one of class 2, one ignored (0)
    let probabilities = Tensor::from_slice(&[0.1f32, 0.7, 0.2, 0.0, 0.2, 0.4, 0.4, 0.0, 0.1, 0.3, 0.6, 0.0, 0.5, 0.2, 0.3, 0.0]).view([4, 4]);
    let labels = Tensor::from_slice(&[1i64, 1, 2, 0]);
    let value = loss::lovasz_softmax(&probabilities, &labels, 0).double_value(&[]);
    // class 1: fg [1,1,0], p [0.7,0.4,0.3] → errors [0.3,0.6,0.3] sorted [0.6,0.3,0.3] with fg [1,1,0] (stable order)
    //   jaccard: 1 - (2-1)/(2+0)=0.5, 1-(2-2)/(2+0)=1, 1-0/(2+1)=1 → grad [0.5,0.5,0] → 0.6·0.5+0.3·0.5 = 0.45
    // class 2: fg [0,0,1], p [0.2,0.4,0.6] → errors [0.2,0.4,0.4] sorted [0.4,0.4,0.2] fg [0,1,0] or [1,0,0]
    //   either order: jaccard steps sum to 1 over the first two → 0.4·(1/2) + 0.4·(1/2) = 0.4
    let expected = (0.45 + 0.4) / 2.0;
    assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
}
