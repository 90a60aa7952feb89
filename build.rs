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
            build_cuda_shim(&torch_lib);
        }
    }
    println!("cargo:rustc-check-cfg=cfg(kdseg_cuda_shim)");

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

/// Compiles the small C++ shim that reads libtorch's CUDA caching-allocator statistics and captures
/// CUDA graphs, when the CUDA headers of the PyPI wheels (nvidia/cu*/include) are next to torch.
fn build_cuda_shim(torch_lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/gpu/memory_stats.cpp");
    println!("cargo:rerun-if-changed=src/gpu/graph.cpp");
    println!("cargo:rerun-if-changed=src/gpu/profiler.cpp");
    println!("cargo:rerun-if-changed=src/gpu/guarded.h");
    let Some(torch_dir) = torch_lib.parent() else { return };
    let Some(site_packages) = torch_dir.parent() else { return };
    let cuda_include = std::fs::read_dir(site_packages.join("nvidia"))
        .ok()
        .and_then(|dirs| dirs.filter_map(|d| d.ok().map(|d| d.path().join("include"))).find(|p| p.join("cuda_runtime_api.h").exists()));
    let Some(cuda_include) = cuda_include else {
        println!("cargo:warning=CUDA headers not found next to torch: GPU memory statistics and CUDA graphs disabled");
        return;
    };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("src/gpu/memory_stats.cpp")
        .file("src/gpu/graph.cpp")
        .file("src/gpu/profiler.cpp")
        .include(torch_dir.join("include"))
        .include(torch_dir.join("include").join("torch").join("csrc").join("api").join("include"))
        .include(&cuda_include);
    // the cuda-runtime wheel lacks crt/host_config.h; triton's wheel ships it (searched last)
    let triton = site_packages.join("triton").join("backends").join("nvidia").join("include");
    if !cuda_include.join("crt").join("host_config.h").exists() && triton.join("crt").join("host_config.h").exists() {
        build.include(&triton);
    }
    let built = build
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .try_compile("kdseg_cuda_shim");
    match built {
        Ok(()) => {
            println!("cargo:rustc-link-lib=torch_cuda");
            println!("cargo:rustc-link-lib=c10_cuda");
            println!("cargo:rustc-link-lib=c10");
            println!("cargo:rustc-cfg=kdseg_cuda_shim");
        }
        Err(e) => println!("cargo:warning=GPU memory statistics and CUDA graphs disabled: {e}"),
    }
}
