{
  "targets": [
    {
      "target_name": "resnet_ts",
      "sources": [
        "cpp/addon.cc",
        "cpp/tensor.cc",
        "cpp/ops.cc",
        "cpp/autograd.cc",
        "cpp/cuda.cc",
        "cpp/allocator.cc",
        "cpp/distributed.cc",
        "cpp/handles.cc",
        "cpp/share.cc",
        "cpp/fused.cc",
        "cpp/dnnl_conv.cc",
        "cpp/cpu_cache.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libtorch.mjs --include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "<!@(node scripts/libtorch.mjs --defines)",
        "RESNET_TS_CUDA=<!(node scripts/libtorch.mjs --cuda)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y", "-std=gnu++20"],
      "cflags_cc": ["-std=c++20", "-frtti", "-fexceptions", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "<!@(node scripts/libtorch.mjs --cflags)"],
      "ldflags": ["<!@(node scripts/libtorch.mjs --ldflags)"],
      "libraries": ["<!@(node scripts/libtorch.mjs --libs)"]
    }
  ]
}
