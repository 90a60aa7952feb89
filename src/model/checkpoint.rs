//! Checkpoints: PyTorch `torch.save(state_dict)` files (`.pt`, `.pth`) and safetensors, loaded
//! strictly — every tensor of the model must be there with its shape, and nothing else — so a wrong
//! file fails with the names and shapes at fault instead of running with half its weights.

use super::{NetConfig, Variant};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Read { path: String, source: tch::TchError },
    #[error("{path}: unknown checkpoint format (expected .pt, .pth, .bin or .safetensors)")]
    Format { path: String },
    #[error("{path}: not a KDMOS/MotionBEV state_dict: {reason}")]
    NotThisModel { path: String, reason: String },
    #[error("{path} does not match the {model} network:\n  {}", problems.join("\n  "))]
    Mismatch { path: String, model: String, problems: Vec<String> },
    #[error("{path}: cannot write checkpoint: {reason}")]
    Write { path: String, reason: String },
}

/// All named tensors of a checkpoint file, on the CPU.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let name = path.display().to_string();
    let read_err = |source| CheckpointError::Read { path: name.clone(), source };
    if !path.is_file() {
        return Err(CheckpointError::Read { path: name.clone(), source: tch::TchError::FileFormat(format!("no such file: {name}")) });
    }
    let tensors = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path).map_err(read_err)?,
        Some("pt") | Some("pth") | Some("bin") => Tensor::loadz_multi(path).map_err(read_err)?,
        _ => return Err(CheckpointError::Format { path: name }),
    };
    let mut map: HashMap<String, Tensor> = tensors.into_iter().collect();
    // a model saved from nn.DataParallel prefixes every key with "module."
    if !map.is_empty() && map.keys().all(|k| k.starts_with("module.")) {
        map = map.into_iter().map(|(k, v)| (k["module.".len()..].to_string(), v)).collect();
    }
    Ok(map)
}

/// Variant, classes and width from the tensors of a state_dict.
pub fn infer_config(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<NetConfig, CheckpointError> {
    let not_this = |reason: &str| CheckpointError::NotThisModel { path: path.display().to_string(), reason: reason.to_string() };
    let variant = if tensors.contains_key("BEV_model.network.up3.up.init_pos") {
        Variant::Kdmos
    } else if tensors.contains_key("BEV_model.network.up3.up.weight") {
        Variant::MotionBev
    } else {
        return Err(not_this("it has neither BEV_model.network.up3.up.init_pos (DySample) nor BEV_model.network.up3.up.weight (ConvTranspose2d)"));
    };
    let outc = tensors.get("BEV_model.network.outc.conv.weight").ok_or_else(|| not_this("BEV_model.network.outc.conv.weight is missing"))?;
    let size = outc.size();
    if size.len() != 4 || size[0] % 32 != 0 {
        return Err(not_this(&format!("BEV_model.network.outc.conv.weight has shape {size:?}, expected [classes × 32, width, 1, 1]")));
    }
    let res_inc = tensors.get("BEV_model.network.res_inc.conv.0.weight").ok_or_else(|| not_this("BEV_model.network.res_inc.conv.0.weight is missing"))?;
    let base = match variant {
        Variant::Kdmos => NetConfig::KDMOS,
        Variant::MotionBev => NetConfig::MOTIONBEV,
    };
    Ok(NetConfig { variant, classes: size[0] / 32, width: size[1], motion_channels: res_inc.size()[0], ..base })
}

/// Copies `tensors` into the model's variables after checking names and shapes both ways.
pub fn load_strict(vs: &mut VarStore, path: &Path, tensors: HashMap<String, Tensor>) -> Result<(), CheckpointError> {
    let mut variables = vs.variables();
    let mut problems = Vec::new();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let expected = variables[name].size();
        match tensors.get(name) {
            None => problems.push(format!("missing tensor {name} (the model needs shape {expected:?})")),
            Some(t) if t.size() != expected => problems.push(format!("tensor {name} has shape {:?} in the file, the model needs {expected:?}", t.size())),
            Some(_) => {}
        }
    }
    let mut extra: Vec<(&String, Vec<i64>)> = tensors.iter().filter(|(k, _)| !variables.contains_key(*k)).map(|(k, t)| (k, t.size())).collect();
    extra.sort();
    for (name, shape) in extra {
        problems.push(format!("unexpected tensor {name} with shape {shape:?}"));
    }
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch { path: path.display().to_string(), model: "KDMOS/MotionBEV".into(), problems });
    }
    tch::no_grad(|| {
        for (name, var) in variables.iter_mut() {
            let source = &tensors[name];
            var.f_copy_(&source.to_kind(var.kind())).map_err(|source| CheckpointError::Read { path: format!("{} ({name})", path.display()), source })?;
        }
        Ok(())
    })
}

/// Writes every variable as safetensors through a temporary file and a rename, so an interrupted
/// write never leaves a truncated checkpoint where a good one was.
pub fn save_atomic(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    let write_err = |reason: String| CheckpointError::Write { path: path.display().to_string(), reason };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| write_err(e.to_string()))?;
    }
    let tmp = path.with_extension("tmp.safetensors");
    let variables = vs.variables();
    // packed: safetensors stores the bytes as laid out, and a variable may be a strided view
    let mut named: Vec<(String, Tensor)> = variables.into_iter().map(|(k, v)| (k, v.to_device(tch::Device::Cpu).contiguous())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, &tmp).map_err(|e| write_err(e.to_string()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| write_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(e.to_string()))
}
