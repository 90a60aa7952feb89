//! ROS parameters → the typed [`Config`]: the flat dotted names rcl produces from a params file
//! (`mos.weights`, `pose.lookup_timeout_s`) are folded back into the nested configuration, so an
//! unknown or mistyped parameter fails at start with its name.

use crate::config::{Config, ConfigError};
use r2r::indexmap::IndexMap;
use r2r::{Parameter, ParameterValue};

/// Parameters r2r or rcl manage themselves.
const RESERVED: &[&str] = &["use_sim_time", "start_type_description_service"];

fn to_yaml(value: &ParameterValue) -> Option<serde_yaml::Value> {
    use serde_yaml::Value;
    Some(match value {
        ParameterValue::NotSet => return None,
        ParameterValue::Bool(b) => Value::Bool(*b),
        ParameterValue::Integer(i) => Value::Number((*i).into()),
        ParameterValue::Double(d) => Value::Number((*d).into()),
        ParameterValue::String(s) => Value::String(s.clone()),
        ParameterValue::BoolArray(v) => Value::Sequence(v.iter().map(|b| Value::Bool(*b)).collect()),
        ParameterValue::ByteArray(v) => Value::Sequence(v.iter().map(|b| Value::Number((*b as u64).into())).collect()),
        ParameterValue::IntegerArray(v) => Value::Sequence(v.iter().map(|i| Value::Number((*i).into())).collect()),
        ParameterValue::DoubleArray(v) => Value::Sequence(v.iter().map(|d| Value::Number((*d).into())).collect()),
        ParameterValue::StringArray(v) => Value::Sequence(v.iter().map(|s| Value::String(s.clone())).collect()),
    })
}

/// Builds the configuration from the node's parameters.
pub fn config_from_parameters(params: &IndexMap<String, Parameter>) -> Result<Config, ConfigError> {
    let mut root = serde_yaml::Mapping::new();
    for (name, parameter) in params {
        if RESERVED.contains(&name.as_str()) || name.starts_with("qos_overrides.") {
            continue;
        }
        let Some(value) = to_yaml(&parameter.value) else { continue };
        let parts: Vec<&str> = name.split('.').collect();
        let mut map = &mut root;
        for part in &parts[..parts.len() - 1] {
            let key = serde_yaml::Value::String(part.to_string());
            let entry = map.entry(key).or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
            if !entry.is_mapping() {
                return Err(ConfigError::Invalid { parameter: name.clone(), reason: format!("'{part}' is both a value and a group") });
            }
            map = entry.as_mapping_mut().ok_or_else(|| ConfigError::Invalid { parameter: name.clone(), reason: "not a group".into() })?;
        }
        map.insert(serde_yaml::Value::String(parts[parts.len() - 1].to_string()), value);
    }
    let text = serde_yaml::to_string(&serde_yaml::Value::Mapping(root)).map_err(|e| ConfigError::Parse { file: "ROS parameters".into(), reason: e.to_string() })?;
    Config::from_yaml(&text, "ROS parameters")
}
