//! What a surface is: its SemanticKITTI class, instance and material.
//!
//! Labels follow SemanticKITTI: a `u32` whose lower 16 bits are the semantic id and upper 16 bits the
//! instance id. Movable classes have a static id (10 car, 30 person, ...) and a moving id (252
//! moving-car, 254 moving-person, ...); which one a point gets depends on whether its object moved
//! between the previous scan and this one (see [`crate::sim::World::is_moving`]).
//!
//! Materials describe the surface at the LiDAR's wavelength (905 nm): diffuse reflectivity,
//! retro-reflection, how opaque it is (glass and wire mesh let most beams through) and, for porous
//! volumes such as foliage, how far a beam gets inside before it returns.

use serde::{Deserialize, Serialize};

/// The classes the simulator generates (a subset of SemanticKITTI's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Road,
    Parking,
    Sidewalk,
    OtherGround,
    Building,
    Fence,
    OtherStructure,
    Vegetation,
    Trunk,
    Terrain,
    Pole,
    TrafficSign,
    Car,
    Truck,
    Person,
    Bicyclist,
    Bicycle,
    Motorcycle,
    Motorcyclist,
}

impl Class {
    /// SemanticKITTI semantic id; `moving` selects the moving-* id of movable classes.
    pub fn label(self, moving: bool) -> u16 {
        match (self, moving) {
            (Class::Road, _) => 40,
            (Class::Parking, _) => 44,
            (Class::Sidewalk, _) => 48,
            (Class::OtherGround, _) => 49,
            (Class::Building, _) => 50,
            (Class::Fence, _) => 51,
            (Class::OtherStructure, _) => 52,
            (Class::Vegetation, _) => 70,
            (Class::Trunk, _) => 71,
            (Class::Terrain, _) => 72,
            (Class::Pole, _) => 80,
            (Class::TrafficSign, _) => 81,
            (Class::Car, false) => 10,
            (Class::Car, true) => 252,
            (Class::Truck, false) => 18,
            (Class::Truck, true) => 258,
            (Class::Person, false) => 30,
            (Class::Person, true) => 254,
            (Class::Bicyclist, false) => 31,
            (Class::Bicyclist, true) => 253,
            // a bicycle without rider or a parked motorcycle never moves on its own
            (Class::Bicycle, _) => 11,
            (Class::Motorcycle, _) => 15,
            (Class::Motorcyclist, false) => 32,
            (Class::Motorcyclist, true) => 255,
        }
    }
}

/// A SemanticKITTI label word.
#[inline]
pub fn label_word(semantic: u16, instance: u16) -> u32 {
    u32::from(semantic) | (u32::from(instance) << 16)
}

/// True for SemanticKITTI moving-* ids (251–259).
#[inline]
pub fn is_moving_label(label: u32) -> bool {
    (251..=259).contains(&(label & 0xFFFF))
}

/// How a surface looks to the LiDAR.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Material {
    /// Diffuse reflectivity at 905 nm, 0..1.
    pub reflectivity: f32,
    /// Retro-reflective sheeting (signs, number plates): bright at any incidence.
    pub retroreflective: bool,
    /// Probability that a beam crossing the surface returns from it; glass and wire mesh let the rest
    /// through.
    pub opacity: f32,
    /// Extinction coefficient inside a porous volume (foliage), per metre; 0 for solid surfaces.
    pub extinction: f32,
}

impl Material {
    pub const fn solid(reflectivity: f32) -> Material {
        Material { reflectivity, retroreflective: false, opacity: 1.0, extinction: 0.0 }
    }

    pub const fn retroreflective(reflectivity: f32) -> Material {
        Material { reflectivity, retroreflective: true, opacity: 1.0, extinction: 0.0 }
    }

    pub const fn translucent(reflectivity: f32, opacity: f32) -> Material {
        Material { reflectivity, retroreflective: false, opacity, extinction: 0.0 }
    }

    pub const fn porous(reflectivity: f32, extinction: f32) -> Material {
        Material { reflectivity, retroreflective: false, opacity: 1.0, extinction }
    }
}

/// One labelled surface of the world: every primitive points at one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Surface {
    pub class: Class,
    /// Object instance (≥ 1) for things, 0 for stuff.
    pub instance: u16,
    pub material: Material,
}

/// Ground cover painted on the terrain, with its class and material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GroundKind {
    Terrain = 0,
    Road = 1,
    RoadMarking = 2,
    Parking = 3,
    ParkingMarking = 4,
    Sidewalk = 5,
    OtherGround = 6,
}

impl GroundKind {
    pub fn from_u8(v: u8) -> GroundKind {
        match v {
            1 => GroundKind::Road,
            2 => GroundKind::RoadMarking,
            3 => GroundKind::Parking,
            4 => GroundKind::ParkingMarking,
            5 => GroundKind::Sidewalk,
            6 => GroundKind::OtherGround,
            _ => GroundKind::Terrain,
        }
    }

    /// Painted lines are labelled as the surface they are painted on (SemanticKITTI's learning maps
    /// fold lane-marking into road anyway).
    pub fn class(self) -> Class {
        match self {
            GroundKind::Terrain => Class::Terrain,
            GroundKind::Road | GroundKind::RoadMarking => Class::Road,
            GroundKind::Parking | GroundKind::ParkingMarking => Class::Parking,
            GroundKind::Sidewalk => Class::Sidewalk,
            GroundKind::OtherGround => Class::OtherGround,
        }
    }

    pub fn material(self) -> Material {
        match self {
            // worn asphalt is dark at 905 nm; paint is bright; grass reflects near-infrared well
            GroundKind::Road => Material::solid(0.19),
            GroundKind::Parking => Material::solid(0.21),
            GroundKind::RoadMarking | GroundKind::ParkingMarking => Material::solid(0.62),
            GroundKind::Sidewalk => Material::solid(0.3),
            GroundKind::OtherGround => Material::solid(0.26),
            GroundKind::Terrain => Material::solid(0.42),
        }
    }

    /// Surface roughness as height noise, metres (grass and gravel are not flat).
    pub fn roughness(self) -> f32 {
        match self {
            GroundKind::Terrain => 0.035,
            GroundKind::OtherGround => 0.01,
            _ => 0.003,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_words_follow_semantic_kitti() {
        assert_eq!(label_word(Class::Car.label(true), 7), 252 | (7 << 16));
        assert_eq!(Class::Person.label(false), 30);
        assert!(is_moving_label(label_word(Class::Bicyclist.label(true), 3)));
        assert!(!is_moving_label(label_word(Class::Bicyclist.label(false), 3)));
        assert_eq!(Class::Bicycle.label(true), 11);
        for class in [Class::Road, Class::Building, Class::Vegetation, Class::Pole] {
            assert!((40..100).contains(&class.label(false)));
            assert_eq!(class.label(true), class.label(false));
        }
    }
}
