//! Packs a proxy-wasm module as an OCI image layout tarball in the Wasm image format Istio pulls
//! (the "oci" variant of solo-io/wasm `spec/spec.md`, read by istio `pkg/wasm/imagefetcher.go`),
//! byte for byte deterministic so that the manifest digest written into the WasmPlugin's `sha256`
//! only changes when the module does. No Docker, no registry: push the tarball with any OCI tool.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Media type of the manifest config and of the runtime-config layer.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of the layer holding the raw module.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Every tar entry gets this modification time, so rebuilding never changes the archive.
const FIXED_MTIME: u64 = 0;

/// Errors from packing or from editing the WasmPlugin manifest.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("not a wasm module: the file does not start with the \\0asm magic number")]
    NotWasm,
    #[error("root id {0:?} is empty or contains characters other than [A-Za-z0-9_.-]")]
    BadRootId(String),
    #[error("tag {0:?} is not a valid OCI tag")]
    BadTag(String),
    #[error("writing the tar archive: {0}")]
    Tar(#[from] std::io::Error),
    #[error("the WasmPlugin has no `sha256:` field under `spec:`")]
    NoSha256Field,
    #[error("the WasmPlugin has more than one `sha256:` field")]
    ManySha256Fields,
}

/// What goes into the image besides the module itself.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Root context id of the filter, advertised in the runtime config (`root_ids`).
    pub root_id: String,
    /// Tag recorded in `index.json` as `org.opencontainers.image.ref.name`.
    pub tag: String,
}

/// A packed image: the tarball and the digests a WasmPlugin or a registry refers to.
#[derive(Debug, Clone)]
pub struct Image {
    /// The OCI image layout as a tar archive.
    pub tar: Vec<u8>,
    /// Hex sha256 of the manifest: the image digest, which Istio compares with `sha256`.
    pub manifest_digest: String,
    /// Hex sha256 of the module itself.
    pub module_digest: String,
}

/// Hex-encoded sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in sum {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn descriptor(media_type: &str, blob: &[u8], title: Option<&str>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", sha256_hex(blob)),
        "size": blob.len(),
    });
    if let Some(title) = title {
        d["annotations"] = serde_json::json!({ "org.opencontainers.image.title": title });
    }
    d
}

fn valid_tag(tag: &str) -> bool {
    // OCI distribution spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Builds the image for `module`. The same inputs always give the same bytes.
///
/// Istio's "oci" variant reader wants exactly two layers, one of them the raw module, so the
/// runtime config is both the manifest config and the first layer (as `wasme` pushed them).
pub fn build_image(module: &[u8], opts: &ImageOptions) -> Result<Image, OciError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(OciError::NotWasm);
    }
    if opts.root_id.is_empty()
        || !opts
            .root_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(OciError::BadRootId(opts.root_id.clone()));
    }
    if !valid_tag(&opts.tag) {
        return Err(OciError::BadTag(opts.tag.clone()));
    }
    // serde_json without `preserve_order` sorts object keys, so the JSON text is stable.
    let runtime_config = serde_json::to_vec(&serde_json::json!({
        "type": "envoy_proxy",
        "abiVersions": ["v0.2.1"],
        "config": { "rootIds": [opts.root_id] },
    }))
    .map_err(std::io::Error::other)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &runtime_config, None),
        "layers": [
            descriptor(CONFIG_MEDIA_TYPE, &runtime_config, Some("runtime-config.json")),
            descriptor(WASM_LAYER_MEDIA_TYPE, module, Some("plugin.wasm")),
        ],
    }))
    .map_err(std::io::Error::other)?;
    let manifest_digest = sha256_hex(&manifest);
    let mut index_entry = descriptor(MANIFEST_MEDIA_TYPE, &manifest, None);
    index_entry["annotations"] =
        serde_json::json!({ "org.opencontainers.image.ref.name": opts.tag });
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [index_entry],
    }))
    .map_err(std::io::Error::other)?;

    let mut files: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
    ];
    let mut blobs: Vec<&[u8]> = vec![&manifest, &runtime_config, module];
    blobs.sort_by_key(|b| sha256_hex(b));
    for blob in blobs {
        files.push((format!("blobs/sha256/{}", sha256_hex(blob)), blob));
    }

    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        builder.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        builder.append_data(&mut h, path, data)?;
    }
    let tar = builder.into_inner()?;
    Ok(Image {
        tar,
        manifest_digest,
        module_digest: sha256_hex(module),
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(FIXED_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Finds the line `  sha256: <hex>` of a WasmPlugin: returns its index and current value.
fn sha256_line(yaml: &str) -> Result<(usize, String), OciError> {
    let mut found = None;
    for (i, line) in yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        // Only an indented key: a top-level `sha256:` would not be the WasmPlugin spec field.
        if line.len() > trimmed.len() && trimmed.starts_with("sha256:") {
            if found.is_some() {
                return Err(OciError::ManySha256Fields);
            }
            let value = trimmed["sha256:".len()..]
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string();
            found = Some((i, value));
        }
    }
    found.ok_or(OciError::NoSha256Field)
}

/// The `sha256` value currently written in a WasmPlugin manifest.
pub fn wasmplugin_sha256(yaml: &str) -> Result<String, OciError> {
    sha256_line(yaml).map(|(_, v)| v)
}

/// The manifest text with its `sha256` set to `digest` (quoted); every other byte is kept.
pub fn set_wasmplugin_sha256(yaml: &str, digest: &str) -> Result<String, OciError> {
    let (index, _) = sha256_line(yaml)?;
    let mut out = String::with_capacity(yaml.len());
    for (i, line) in yaml.split_inclusive('\n').enumerate() {
        if i == index {
            let indent = &line[..line.len() - line.trim_start().len()];
            let newline = if line.ends_with('\n') { "\n" } else { "" };
            // Quoted: YAML would read an all-digit digest (or one like 1e5...) as a number.
            out.push_str(&format!("{indent}sha256: \"{digest}\"{newline}"));
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn opts() -> ImageOptions {
        ImageOptions {
            root_id: "sluice".into(),
            tag: "0.1.0".into(),
        }
    }

    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mtime = entry.header().mtime().expect("mtime");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            out.push((path, data, mtime));
        }
        out
    }

    #[test]
    fn same_module_gives_same_bytes_and_digest() {
        let a = build_image(MODULE, &opts()).expect("build");
        let b = build_image(MODULE, &opts()).expect("build");
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let other = build_image(b"\0asm\x01\0\0\0\0", &opts()).expect("build");
        assert_ne!(a.manifest_digest, other.manifest_digest);
    }

    #[test]
    fn layout_is_an_istio_wasm_oci_image() {
        let image = build_image(MODULE, &opts()).expect("build");
        let files = entries(&image.tar);
        assert!(files.iter().all(|(_, _, mtime)| *mtime == 0));
        let get = |name: &str| {
            files
                .iter()
                .find(|(p, _, _)| p == name)
                .map(|(_, d, _)| d.clone())
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let index: serde_json::Value = serde_json::from_slice(&get("index.json")).expect("json");
        let digest = index["manifests"][0]["digest"].as_str().expect("digest");
        assert_eq!(digest, format!("sha256:{}", image.manifest_digest));
        let manifest_bytes = get(&format!("blobs/sha256/{}", image.manifest_digest));
        assert_eq!(sha256_hex(&manifest_bytes), image.manifest_digest);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("json");
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(
            layers.len(),
            2,
            "Istio's oci-variant reader wants two layers"
        );
        let wasm = layers
            .iter()
            .find(|l| l["mediaType"] == WASM_LAYER_MEDIA_TYPE)
            .expect("wasm layer");
        let blob_name = wasm["digest"].as_str().expect("digest").replace(':', "/");
        assert_eq!(get(&format!("blobs/{blob_name}")), MODULE);
        assert_eq!(wasm["size"], MODULE.len());
        // Every descriptor's blob is present and has the declared digest and size.
        for d in layers.iter().chain([&manifest["config"]]) {
            let hex = d["digest"]
                .as_str()
                .expect("digest")
                .trim_start_matches("sha256:");
            let blob = get(&format!("blobs/sha256/{hex}"));
            assert_eq!(sha256_hex(&blob), hex);
            assert_eq!(d["size"], blob.len());
        }
    }

    #[test]
    fn rejects_what_is_not_a_module_or_a_bad_name() {
        assert!(matches!(
            build_image(b"\x7fELF....", &opts()),
            Err(OciError::NotWasm)
        ));
        let mut o = opts();
        o.root_id = "a b".into();
        assert!(matches!(
            build_image(MODULE, &o),
            Err(OciError::BadRootId(_))
        ));
        let mut o = opts();
        o.tag = ".x".into();
        assert!(matches!(build_image(MODULE, &o), Err(OciError::BadTag(_))));
    }

    #[test]
    fn rewrites_only_the_sha256_line() {
        let yaml = "kind: WasmPlugin\nspec:\n  url: oci://x/y:1\n  sha256: \"old\" # note\n  phase: AUTHZ\n";
        assert_eq!(wasmplugin_sha256(yaml).expect("field"), "old");
        let new = set_wasmplugin_sha256(yaml, "abc").expect("set");
        assert_eq!(
            new,
            "kind: WasmPlugin\nspec:\n  url: oci://x/y:1\n  sha256: \"abc\"\n  phase: AUTHZ\n"
        );
        assert!(matches!(
            wasmplugin_sha256("spec:\n  url: x\n"),
            Err(OciError::NoSha256Field)
        ));
        assert!(matches!(
            wasmplugin_sha256("spec:\n  sha256: a\n  sha256: b\n"),
            Err(OciError::ManySha256Fields)
        ));
    }
}
