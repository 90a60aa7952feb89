//! Link-time fixes that the plain dependency graph cannot express.
//!
//! * libtorch's CUDA half (`libtorch_cuda.so`) registers its kernels from static initialisers and
//!   exports nothing we call, so the default `--as-needed` linking drops it and CUDA stays invisible.
//!   We link it explicitly whenever the libtorch we build against ships it.
//! * The torch library directory is added as a run path so that `target/*/kdseg` starts without
//!   any environment; `LD_LIBRARY_PATH` still wins (the GPU machine uses its own torch).
//! * With the `ros` feature, r2r needs two fixes for the PyPI ROS 2 wheels (see
//!   `scripts/setup.sh`): a `librmw_implementation.so` shim and libpython for the type-description
//!   bindings that `librcl.so` pulls in at run time.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(torch_lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        let torch_lib = PathBuf::from(torch_lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", torch_lib.display());
        if torch_lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }

    for var in ["KDSEG_RMW_SHIM_DIR", "KDSEG_PYTHON_LIBDIR", "KDSEG_PYTHON_LIB", "AMENT_PREFIX_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if env::var_os("CARGO_FEATURE_ROS").is_some() {
        let shim = env::var("KDSEG_RMW_SHIM_DIR").unwrap_or_else(|_| {
            panic!("the `ros` feature needs the ROS environment: run `make setup` and `source scripts/env.sh` (KDSEG_RMW_SHIM_DIR is unset)")
        });
        println!("cargo:rustc-link-search=native={shim}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{shim}");
        if let (Ok(dir), Ok(lib)) = (env::var("KDSEG_PYTHON_LIBDIR"), env::var("KDSEG_PYTHON_LIB")) {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-l{lib}");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
        if let Ok(prefixes) = env::var("AMENT_PREFIX_PATH") {
            for prefix in prefixes.split(':').filter(|p| !p.is_empty()) {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{prefix}/lib");
            }
        }
    }
}
