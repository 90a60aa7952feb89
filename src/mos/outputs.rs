//! The messages a segmented scan turns into: the labelled cloud (`x, y, z, intensity, label, score,
//! rgb`), its moving and static parts, and the compact per-point labels of the input cloud
//! (`kdseg_msgs/PointLabels`, no coordinates, in the input's point order).

use super::{ScanResult, LABEL_MOVING, LABEL_STATIC};
use crate::cloud::{self, PointCloud};
use crate::messages::{Header, PointCloud2, PointLabels};
use crate::model::Variant;

/// Everything published (or written) for one scan.
pub struct MosOutputs {
    pub labelled: PointCloud2,
    pub moving: PointCloud2,
    pub statik: PointCloud2,
    pub point_labels: PointLabels,
    pub moving_count: usize,
}

/// Which of the optional outputs to build (a node builds only what someone subscribes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub split: bool,
    pub point_labels: bool,
}

impl Wanted {
    pub const ALL: Wanted = Wanted { split: true, point_labels: true };
}

/// Builds the outputs of `result` for the cloud it came from.
pub fn encode(header: &Header, cloud: &PointCloud, result: &ScanResult, variant: Variant, wanted: Wanted) -> MosOutputs {
    encode_reusing(header, cloud, result, variant, wanted, Vec::new())
}

/// [`encode`], with the labelled cloud's points written into the allocation of `buffer` (a stream
/// hands back the buffer of an earlier scan's outputs).
pub fn encode_reusing(header: &Header, cloud: &PointCloud, result: &ScanResult, variant: Variant, wanted: Wanted, buffer: Vec<u8>) -> MosOutputs {
    let labels = result.mos_labels(variant);
    let scores = &result.moving_probability;
    let labelled = cloud::encode_labelled_into(header.clone(), cloud, &labels, scores, buffer);
    let moving_count = labels.iter().filter(|&&l| l == LABEL_MOVING).count();
    let (moving, statik) = if wanted.split {
        let part = |keep: u32| {
            let mut c = PointCloud::default();
            let (mut l, mut s) = (Vec::new(), Vec::new());
            for (i, &label) in labels.iter().enumerate() {
                if label == keep {
                    c.x.push(cloud.x[i]);
                    c.y.push(cloud.y[i]);
                    c.z.push(cloud.z[i]);
                    c.intensity.push(cloud.intensity[i]);
                    l.push(label);
                    s.push(scores[i]);
                }
            }
            c.source_len = c.x.len();
            c.source_shape = [1, c.source_len as u32];
            cloud::encode_labelled(header.clone(), &c, &l, &s)
        };
        (part(LABEL_MOVING), part(LABEL_STATIC))
    } else {
        let empty = cloud::encode_labelled(header.clone(), &PointCloud::default(), &[], &[]);
        (empty.clone(), empty)
    };
    let point_labels = if wanted.point_labels {
        PointLabels {
            header: header.clone(),
            task: "mos".into(),
            height: cloud.source_shape[0],
            width: cloud.source_shape[1],
            labels: cloud.scatter_to_source(&labels, 0).into_iter().map(|l| l as u16).collect(),
            scores: cloud.scatter_to_source(scores, f32::NAN),
            moving_count: moving_count as u32,
        }
    } else {
        PointLabels::default()
    };
    MosOutputs { labelled, moving, statik, point_labels, moving_count }
}
