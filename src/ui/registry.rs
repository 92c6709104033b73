//! Reads the UI shows from the upstream registry: a repository's tags, each tag's manifest
//! (or index), and image configs — through pingora's [`Connector`], as the catalog does.
//!
//! Callers have already decided that the account may pull the repository; this module only
//! fetches. Everything is bounded: body sizes, tags held, platforms looked into, and requests
//! in flight. Manifests and configs are content-addressed, so what was read by digest is
//! remembered (a bounded map) and a second visit costs one tag → digest request per tag.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::upstream::Upstreams;
use pingora::connectors::http::Connector;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::upstream::FetchError;

/// What manifests are asked for: OCI and Docker, images and indexes.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// The largest tags/list body read.
const MAX_TAGS_BODY: usize = 4 * 1024 * 1024;
/// The most tags held for one repository.
pub const MAX_TAGS: usize = 50_000;
/// The largest manifest read (the registry's own limit is 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// The largest image config read.
const MAX_CONFIG: usize = 1024 * 1024;
/// The most platforms of one index looked into (the rest are listed without details).
pub const MAX_PLATFORMS: usize = 16;
/// Upstream requests in flight for one page.
const PARALLEL: usize = 8;
/// Entries in the by-digest memory before it is emptied.
const MEMORY: usize = 20_000;
/// How long a repository's summary (tag count, newest image) is reused: the list page is
/// looked at often and pushes should show soon.
const SUMMARY_TTL: Duration = Duration::from_secs(30);
/// Up to this many tags, a summary reads every tag to find the newest image.
pub const SUMMARY_TAGS_MAX: usize = 100;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Why something could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The registry has no such repository or tag.
    #[error("not found")]
    NotFound,
    /// Connecting or reading failed, or the registry answered an unexpected status.
    #[error("registry: {0}")]
    Upstream(String),
    /// The answer was too large or not the document expected.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// One platform of an image or index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    /// `os/architecture[/variant]`, when known.
    pub name: Option<String>,
    /// The platform manifest's digest (for an index entry).
    pub digest: Option<String>,
    /// Config + layers, in bytes, when the manifest was read.
    pub size: Option<u64>,
    /// The config's `created`.
    pub created: Option<String>,
}

/// What a tag points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// The manifest digest.
    pub digest: Option<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// True for an index / manifest list.
    pub is_index: bool,
    /// For an image: config + layers. For an index: `None` (see each platform).
    pub size: Option<u64>,
    /// The image's `created`; for an index, the newest of its platforms'.
    pub created: Option<String>,
    /// The image's platform, or the index's platforms (attestations left out).
    pub platforms: Vec<Platform>,
    /// Platforms of an index not looked into (beyond [`MAX_PLATFORMS`]).
    pub platforms_omitted: usize,
    /// Set when the tag could not be read.
    pub error: Option<String>,
}

/// A manifest as read: what the page needs of it.
#[derive(Debug, Clone)]
enum Manifest {
    Image {
        media_type: String,
        config: Option<Descriptor>,
        size: u64,
    },
    Index {
        media_type: String,
        entries: Vec<IndexEntry>,
    },
    Other {
        media_type: String,
    },
}

#[derive(Debug, Clone)]
struct IndexEntry {
    digest: String,
    platform: Option<String>,
    attestation: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    #[serde(default, rename = "mediaType")]
    _media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<RawEntry>>,
}

#[derive(Deserialize)]
struct RawEntry {
    digest: String,
    #[serde(default)]
    platform: Option<RawPlatform>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ConfigFacts {
    platform: Option<String>,
    created: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

fn platform_name(os: &str, arch: &str, variant: Option<&str>) -> Option<String> {
    if os.is_empty() && arch.is_empty() {
        return None;
    }
    let mut s = format!("{os}/{arch}");
    if let Some(v) = variant.filter(|v| !v.is_empty()) {
        s.push('/');
        s.push_str(v);
    }
    Some(s)
}

fn parse_manifest(body: &[u8], header_type: Option<&str>) -> Result<Manifest, ReadError> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ReadError::Malformed(e.to_string()))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| header_type.map(|t| t.split(';').next().unwrap_or(t).trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    if let Some(entries) = raw.manifests {
        let entries = entries
            .into_iter()
            .map(|e| {
                let attestation = e
                    .annotations
                    .get("vnd.docker.reference.type")
                    .is_some_and(|t| t == "attestation-manifest");
                IndexEntry {
                    digest: e.digest,
                    platform: e
                        .platform
                        .and_then(|p| platform_name(&p.os, &p.architecture, p.variant.as_deref())),
                    attestation,
                }
            })
            .collect();
        return Ok(Manifest::Index {
            media_type,
            entries,
        });
    }
    if INDEX_TYPES.contains(&media_type.as_str()) {
        return Ok(Manifest::Index {
            media_type,
            entries: vec![],
        });
    }
    match raw.config {
        Some(config) => {
            let size = raw
                .layers
                .iter()
                .fold(config.size, |acc, l| acc.saturating_add(l.size));
            Ok(Manifest::Image {
                media_type,
                config: Some(config),
                size,
            })
        }
        None => Ok(Manifest::Other { media_type }),
    }
}

fn parse_config(body: &[u8]) -> ConfigFacts {
    match serde_json::from_slice::<RawConfig>(body) {
        Ok(c) => ConfigFacts {
            platform: platform_name(
                c.os.as_deref().unwrap_or(""),
                c.architecture.as_deref().unwrap_or(""),
                c.variant.as_deref(),
            ),
            created: c.created,
        },
        Err(_) => ConfigFacts::default(),
    }
}

struct Fetched {
    status: u16,
    content_type: Option<String>,
    digest: Option<String>,
    body: Vec<u8>,
}

/// A repository as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Tags in the repository.
    pub tags: usize,
    /// The newest image's `created` (the registry API records no push time).
    pub newest: Option<String>,
    /// More than [`SUMMARY_TAGS_MAX`] tags: the newest was not looked for.
    pub too_many: bool,
    /// The repository could not be read.
    pub error: bool,
}

/// Reads from the registry, remembering what it read by digest.
pub struct Reader {
    connector: Connector,
    manifests: Mutex<HashMap<String, Manifest>>,
    configs: Mutex<HashMap<String, ConfigFacts>>,
    summaries: Mutex<HashMap<String, (Instant, Summary)>>,
    permits: Arc<Semaphore>,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

fn remember<V>(map: &Mutex<HashMap<String, V>>, key: &str, value: V) {
    if let Ok(mut m) = map.lock() {
        if m.len() >= MEMORY {
            m.clear();
        }
        m.insert(key.to_owned(), value);
    }
}

fn recall<V: Clone>(map: &Mutex<HashMap<String, V>>, key: &str) -> Option<V> {
    map.lock().ok().and_then(|m| m.get(key).cloned())
}

impl Reader {
    /// A reader with its own connection pool.
    pub fn new() -> Self {
        Reader {
            connector: Connector::new(None),
            manifests: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            summaries: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(PARALLEL)),
        }
    }

    async fn get(
        &self,
        to: &Upstreams,
        target: &str,
        accept: Option<&str>,
        max: usize,
    ) -> Result<Fetched, ReadError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ReadError::Upstream("closed".into()))?;
        let got = to
            .get(&self.connector, target, accept, max)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge(max) => {
                    ReadError::Malformed(format!("answer over {max} bytes"))
                }
                FetchError::Upstream(why) => ReadError::Upstream(why),
                FetchError::NoRegistry => ReadError::NotFound,
            })?;
        Ok(Fetched {
            status: got.status,
            content_type: got.header("content-type").map(str::to_owned),
            digest: got.header("docker-content-digest").map(str::to_owned),
            body: got.body,
        })
    }

    /// The tags of `name` (a valid repository name), sorted; `NotFound` when the registry
    /// does not know it.
    pub async fn tags(&self, to: &Upstreams, name: &str) -> Result<Vec<String>, ReadError> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let target = format!("/v2/{name}/tags/list?n={MAX_TAGS}");
        let got = self.get(to, &target, None, MAX_TAGS_BODY).await?;
        match got.status {
            200 => {}
            404 => return Err(ReadError::NotFound),
            s => return Err(ReadError::Upstream(format!("tags/list answered {s}"))),
        }
        let doc: Doc =
            serde_json::from_slice(&got.body).map_err(|e| ReadError::Malformed(e.to_string()))?;
        let mut tags: Vec<String> = doc
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter(|t| crate::route::is_valid_tag(t))
            .take(MAX_TAGS)
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The manifest `reference` (tag or digest) of `name`, and its digest.
    async fn manifest(
        &self,
        to: &Upstreams,
        name: &str,
        reference: &str,
    ) -> Result<(String, Manifest), ReadError> {
        if reference.starts_with("sha256:") {
            if let Some(m) = recall(&self.manifests, reference) {
                return Ok((reference.to_owned(), m));
            }
        }
        let (digest, content_type, body) = self.manifest_body(to, name, reference).await?;
        if let Some(m) = recall(&self.manifests, &digest) {
            return Ok((digest, m));
        }
        let m = parse_manifest(&body, content_type.as_deref())?;
        remember(&self.manifests, &digest, m.clone());
        Ok((digest, m))
    }

    async fn config(&self, to: &Upstreams, name: &str, digest: &str) -> ConfigFacts {
        if !crate::route::is_valid_digest(digest) {
            return ConfigFacts::default();
        }
        if let Some(c) = recall(&self.configs, digest) {
            return c;
        }
        let target = format!("/v2/{name}/blobs/{digest}");
        match self.get(to, &target, None, MAX_CONFIG).await {
            Ok(got) if got.status == 200 => {
                let facts = parse_config(&got.body);
                remember(&self.configs, digest, facts.clone());
                facts
            }
            _ => ConfigFacts::default(),
        }
    }

    /// One image manifest's platform facts: size from the manifest, the rest from its config.
    async fn image(
        &self,
        to: &Upstreams,
        name: &str,
        config: Option<&Descriptor>,
        size: u64,
    ) -> Platform {
        let facts = match config {
            Some(c) => self.config(to, name, &c.digest).await,
            None => ConfigFacts::default(),
        };
        Platform {
            name: facts.platform,
            digest: None,
            size: Some(size),
            created: facts.created,
        }
    }

    /// What `tag` of `name` points at. Errors are reported in [`TagInfo::error`].
    pub async fn tag(&self, to: &Upstreams, name: &str, tag: &str) -> TagInfo {
        let mut info = TagInfo {
            tag: tag.to_owned(),
            digest: None,
            media_type: None,
            is_index: false,
            size: None,
            created: None,
            platforms: vec![],
            platforms_omitted: 0,
            error: None,
        };
        let (digest, manifest) = match self.manifest(to, name, tag).await {
            Ok(found) => found,
            Err(e) => {
                info.error = Some(e.to_string());
                return info;
            }
        };
        info.digest = Some(digest);
        match manifest {
            Manifest::Image {
                media_type,
                config,
                size,
            } => {
                info.media_type = Some(media_type);
                let p = self.image(to, name, config.as_ref(), size).await;
                info.size = p.size;
                info.created = p.created.clone();
                info.platforms = vec![p];
            }
            Manifest::Other { media_type } => info.media_type = Some(media_type),
            Manifest::Index {
                media_type,
                entries,
            } => {
                info.media_type = Some(media_type);
                info.is_index = true;
                let entries: Vec<IndexEntry> =
                    entries.into_iter().filter(|e| !e.attestation).collect();
                info.platforms_omitted = entries.len().saturating_sub(MAX_PLATFORMS);
                for e in entries.into_iter().take(MAX_PLATFORMS) {
                    let mut p = Platform {
                        name: e.platform.clone(),
                        digest: Some(e.digest.clone()),
                        ..Platform::default()
                    };
                    if crate::route::is_valid_digest(&e.digest) {
                        if let Ok((_, Manifest::Image { config, size, .. })) =
                            self.manifest(to, name, &e.digest).await
                        {
                            let facts = self.image(to, name, config.as_ref(), size).await;
                            p.size = facts.size;
                            p.created = facts.created;
                            p.name = p.name.or(facts.name);
                        }
                    }
                    info.platforms.push(p);
                }
                info.created = info
                    .platforms
                    .iter()
                    .filter_map(|p| p.created.clone())
                    .max();
            }
        }
        info
    }
}

/// One layer (or the config) of an image, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Layer {
    /// The blob's digest.
    pub digest: String,
    /// Its media type, as the manifest says.
    #[serde(default, rename = "mediaType")]
    pub media_type: String,
    /// Its size in bytes, as the manifest says.
    #[serde(default)]
    pub size: u64,
}

/// One step of an image's build, from its config's `history`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Step {
    /// When the step ran.
    #[serde(default)]
    pub created: Option<String>,
    /// The command that made it (`RUN …`, `COPY …`).
    #[serde(default)]
    pub created_by: Option<String>,
    /// True when the step made no layer (`ENV`, `CMD`, …).
    #[serde(default)]
    pub empty_layer: bool,
    /// The builder's comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Everything the tag page shows about one image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDetails {
    /// The manifest's digest.
    pub digest: String,
    /// `os/architecture[/variant]`, when known.
    pub platform: Option<String>,
    /// The manifest's media type.
    pub media_type: String,
    /// The config blob.
    pub config: Option<Layer>,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// Config + layers, in bytes (as the manifest states them).
    pub total: u64,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The config's `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The config's `history`, at most [`MAX_STEPS`] steps.
    pub history: Vec<Step>,
    /// Steps left out beyond [`MAX_STEPS`].
    pub history_omitted: usize,
    /// The config's `created`.
    pub created: Option<String>,
    /// Set when the image (or its config) could not be read.
    pub error: Option<String>,
}

/// Everything the tag page shows about a tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagDetails {
    /// The manifest (or index) digest the tag points at.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// True for an index / manifest list.
    pub is_index: bool,
    /// The index's own annotations (an image's are in its [`ImageDetails`]).
    pub annotations: BTreeMap<String, String>,
    /// The image, or each platform's image of an index (attestations left out).
    pub images: Vec<ImageDetails>,
    /// Platforms of an index not looked into (beyond [`MAX_PLATFORMS`]).
    pub platforms_omitted: usize,
}

/// The most history steps shown for one image.
pub const MAX_STEPS: usize = 500;

#[derive(Deserialize)]
struct DetailManifest {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Layer>,
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    manifests: Option<Vec<RawEntry>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct DetailConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<DetailRuntime>,
    #[serde(default)]
    history: Option<Vec<Step>>,
}

#[derive(Deserialize, Default)]
struct DetailRuntime {
    #[serde(default, rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

fn parse_detail_manifest(body: &[u8]) -> Result<DetailManifest, ReadError> {
    serde_json::from_slice(body).map_err(|e| ReadError::Malformed(e.to_string()))
}

/// Fills `image` from its config document.
fn apply_config(image: &mut ImageDetails, body: &[u8]) {
    match serde_json::from_slice::<DetailConfig>(body) {
        Ok(c) => {
            image.platform = image.platform.take().or_else(|| {
                platform_name(
                    c.os.as_deref().unwrap_or(""),
                    c.architecture.as_deref().unwrap_or(""),
                    c.variant.as_deref(),
                )
            });
            image.created = c.created;
            image.labels = c.config.and_then(|r| r.labels).unwrap_or_default();
            let history = c.history.unwrap_or_default();
            image.history_omitted = history.len().saturating_sub(MAX_STEPS);
            image.history = history.into_iter().take(MAX_STEPS).collect();
        }
        Err(e) => image.error = Some(format!("config unreadable: {e}")),
    }
}

fn image_of(digest: &str, m: DetailManifest, platform: Option<String>) -> ImageDetails {
    let total = m
        .layers
        .iter()
        .fold(m.config.as_ref().map_or(0, |c| c.size), |acc, l| {
            acc.saturating_add(l.size)
        });
    ImageDetails {
        digest: digest.to_owned(),
        platform,
        media_type: m.media_type.unwrap_or_else(|| "unknown".into()),
        config: m.config,
        layers: m.layers,
        total,
        annotations: m.annotations.unwrap_or_default(),
        ..ImageDetails::default()
    }
}

impl Reader {
    /// A manifest read afresh (not remembered: the tag page needs all of it, and a
    /// 4 MiB manifest should not sit in memory): its digest, media type header and body.
    async fn manifest_body(
        &self,
        to: &Upstreams,
        name: &str,
        reference: &str,
    ) -> Result<(String, Option<String>, Vec<u8>), ReadError> {
        let target = format!("/v2/{name}/manifests/{reference}");
        let got = self.get(to, &target, Some(ACCEPT), MAX_MANIFEST).await?;
        match got.status {
            200 => {}
            404 => return Err(ReadError::NotFound),
            s => return Err(ReadError::Upstream(format!("manifest answered {s}"))),
        }
        let digest = got
            .digest
            .filter(|d| crate::route::is_valid_digest(d))
            .unwrap_or_else(|| format!("sha256:{:x}", Sha256::digest(&got.body)));
        Ok((digest, got.content_type, got.body))
    }

    /// One image's details: the manifest given, and its config read.
    async fn image_details(
        &self,
        to: &Upstreams,
        name: &str,
        digest: &str,
        m: DetailManifest,
        platform: Option<String>,
    ) -> ImageDetails {
        let mut image = image_of(digest, m, platform);
        let Some(config) = image.config.clone() else {
            return image;
        };
        if !crate::route::is_valid_digest(&config.digest) {
            image.error = Some("the config digest is malformed".into());
            return image;
        }
        let target = format!("/v2/{name}/blobs/{}", config.digest);
        match self.get(to, &target, None, MAX_CONFIG).await {
            Ok(got) if got.status == 200 => apply_config(&mut image, &got.body),
            Ok(got) => image.error = Some(format!("config answered {}", got.status)),
            Err(e) => image.error = Some(e.to_string()),
        }
        image
    }

    /// Everything about `reference` (a tag) of `name`: layers, labels, annotations, history,
    /// for the image or for each platform of an index.
    pub async fn details(
        &self,
        to: &Upstreams,
        name: &str,
        reference: &str,
    ) -> Result<TagDetails, ReadError> {
        let (digest, header_type, body) = self.manifest_body(to, name, reference).await?;
        let m = parse_detail_manifest(&body)?;
        let media_type = m
            .media_type
            .clone()
            .or_else(|| header_type.map(|t| t.split(';').next().unwrap_or(&t).trim().to_owned()))
            .unwrap_or_else(|| "unknown".into());
        let Some(entries) = m.manifests else {
            let mut m = m;
            m.media_type = Some(media_type.clone());
            let image = self.image_details(to, name, &digest, m, None).await;
            return Ok(TagDetails {
                digest,
                media_type,
                is_index: false,
                annotations: BTreeMap::new(),
                images: vec![image],
                platforms_omitted: 0,
            });
        };
        let entries: Vec<RawEntry> = entries
            .into_iter()
            .filter(|e| {
                e.annotations
                    .get("vnd.docker.reference.type")
                    .is_none_or(|t| t != "attestation-manifest")
            })
            .collect();
        let platforms_omitted = entries.len().saturating_sub(MAX_PLATFORMS);
        let mut images = Vec::new();
        for e in entries.into_iter().take(MAX_PLATFORMS) {
            let platform = e
                .platform
                .as_ref()
                .and_then(|p| platform_name(&p.os, &p.architecture, p.variant.as_deref()));
            if !crate::route::is_valid_digest(&e.digest) {
                images.push(ImageDetails {
                    digest: e.digest,
                    platform,
                    error: Some("malformed digest".into()),
                    ..ImageDetails::default()
                });
                continue;
            }
            let image = match self.manifest_body(to, name, &e.digest).await {
                Ok((d, _, body)) => match parse_detail_manifest(&body) {
                    Ok(m) => self.image_details(to, name, &d, m, platform).await,
                    Err(err) => ImageDetails {
                        digest: d,
                        platform,
                        error: Some(err.to_string()),
                        ..ImageDetails::default()
                    },
                },
                Err(err) => ImageDetails {
                    digest: e.digest,
                    platform,
                    error: Some(err.to_string()),
                    ..ImageDetails::default()
                },
            };
            images.push(image);
        }
        Ok(TagDetails {
            digest,
            media_type,
            is_index: true,
            annotations: m.annotations.unwrap_or_default(),
            images,
            platforms_omitted,
        })
    }

    /// Deletes the manifest `digest` of `name` in the registry (which untags every tag that
    /// points at it). The caller has checked the digest's form and the policy.
    pub async fn delete_manifest(
        &self,
        to: &Upstreams,
        name: &str,
        digest: &str,
    ) -> Result<(), ReadError> {
        let target = format!("/v2/{name}/manifests/{digest}");
        let got = to
            .delete(&self.connector, &target, 64 * 1024)
            .await
            .map_err(|e| ReadError::Upstream(e.to_string()))?;
        match got.status {
            200 | 202 => {
                if let Ok(mut m) = self.manifests.lock() {
                    m.remove(digest);
                }
                self.forget_summary(name);
                Ok(())
            }
            404 => Err(ReadError::NotFound),
            s => Err(ReadError::Upstream(format!(
                "delete answered {s}: {}",
                String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
            ))),
        }
    }
}

impl Reader {
    /// The tag count and newest image of `name` (a repository the caller may pull), reused
    /// for `SUMMARY_TTL` (30 s).
    pub async fn summary(self: &Arc<Self>, to: &Upstreams, name: &str) -> Summary {
        let now = Instant::now();
        if let Some((at, s)) = recall(&self.summaries, name) {
            if now.duration_since(at) < SUMMARY_TTL {
                return s;
            }
        }
        let summary = match self.tags(to, name).await {
            Err(ReadError::NotFound) => Summary::default(),
            Err(_) => Summary {
                error: true,
                ..Summary::default()
            },
            Ok(tags) if tags.len() > SUMMARY_TAGS_MAX => Summary {
                tags: tags.len(),
                too_many: true,
                ..Summary::default()
            },
            Ok(tags) => {
                let infos = tags_info(self, to, name, &tags).await;
                Summary {
                    tags: tags.len(),
                    newest: infos
                        .into_iter()
                        .filter_map(|i| i.created)
                        .max_by_key(|c| time_key(c)),
                    ..Summary::default()
                }
            }
        };
        if !summary.error {
            remember(&self.summaries, name, (now, summary.clone()));
        }
        summary
    }

    /// Forgets the summary of `name` (after a delete there).
    pub fn forget_summary(&self, name: &str) {
        if let Ok(mut m) = self.summaries.lock() {
            m.remove(name);
        }
    }
}

/// The summaries of `names`, read concurrently, in order.
pub async fn summaries(reader: &Arc<Reader>, to: &Upstreams, names: &[String]) -> Vec<Summary> {
    let mut set = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let (reader, to, name) = (reader.clone(), to.clone(), name.clone());
        set.spawn(async move { (i, reader.summary(&to, &name).await) });
    }
    let mut out = vec![
        Summary {
            error: true,
            ..Summary::default()
        };
        names.len()
    ];
    while let Some(done) = set.join_next().await {
        if let Ok((i, s)) = done {
            out[i] = s;
        }
    }
    out
}

/// A key that orders RFC 3339 UTC times (`2024-05-01T10:00:00.5Z`) as time does, whatever
/// the number of fraction digits: the seconds, then the fraction padded to nine digits.
pub fn time_key(text: &str) -> String {
    let t = text.trim();
    let (head, rest) = t.split_at(t.len().min(19));
    let fraction: String = rest
        .strip_prefix('.')
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    format!("{head}.{fraction:0<9}")
}

/// Reads `tags` of `name` concurrently (at most [`PARALLEL`] requests in flight), in order.
pub async fn tags_info(
    reader: &Arc<Reader>,
    to: &Upstreams,
    name: &str,
    tags: &[String],
) -> Vec<TagInfo> {
    let mut set = tokio::task::JoinSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let (reader, to, name, tag) = (reader.clone(), to.clone(), name.to_owned(), tag.clone());
        set.spawn(async move { (i, reader.tag(&to, &name, &tag).await) });
    }
    let mut out: Vec<Option<TagInfo>> = vec![None; tags.len()];
    while let Some(done) = set.join_next().await {
        if let Ok((i, info)) = done {
            out[i] = Some(info);
        }
    }
    out.into_iter()
        .zip(tags)
        .map(|(info, tag)| {
            info.unwrap_or_else(|| TagInfo {
                tag: tag.clone(),
                digest: None,
                media_type: None,
                is_index: false,
                size: None,
                created: None,
                platforms: vec![],
                platforms_omitted: 0,
                error: Some("could not be read".into()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_manifests_give_their_size() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"c","digest":"sha256:aa","size":100},
            "layers":[{"mediaType":"l","digest":"sha256:bb","size":1000},{"mediaType":"l","digest":"sha256:cc","size":20}]}"#;
        match parse_manifest(m, None).unwrap() {
            Manifest::Image {
                media_type, size, ..
            } => {
                assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
                assert_eq!(size, 1120);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn indexes_list_platforms_without_attestations() {
        let m = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:b","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:c","size":1,"platform":{"os":"unknown","architecture":"unknown"},
             "annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}"#;
        match parse_manifest(m, Some("application/vnd.oci.image.index.v1+json; x")).unwrap() {
            Manifest::Index {
                media_type,
                entries,
            } => {
                assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
                let names: Vec<_> = entries.iter().map(|e| e.platform.clone()).collect();
                assert_eq!(
                    names,
                    vec![
                        Some("linux/arm64/v8".into()),
                        Some("linux/amd64".into()),
                        Some("unknown/unknown".into())
                    ]
                );
                assert!(entries[2].attestation && !entries[0].attestation);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times_order_as_time_does() {
        assert!(time_key("2024-05-01T10:00:00.5Z") > time_key("2024-05-01T10:00:00Z"));
        assert!(time_key("2024-05-01T10:00:01Z") > time_key("2024-05-01T10:00:00.999Z"));
        assert!(time_key("2025-01-01T00:00:00Z") > time_key("2024-12-31T23:59:59.9Z"));
        assert_eq!(time_key("x"), "x.000000000");
    }

    #[test]
    fn details_read_layers_labels_and_history() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"c","digest":"sha256:aa","size":100},
            "layers":[{"mediaType":"l","digest":"sha256:bb","size":1000}],
            "annotations":{"org.opencontainers.image.source":"https://x"}}"#;
        let mut image = image_of("sha256:top", parse_detail_manifest(m).unwrap(), None);
        assert_eq!(image.total, 1100);
        assert_eq!(image.layers.len(), 1);
        assert_eq!(
            image.annotations["org.opencontainers.image.source"],
            "https://x"
        );
        apply_config(
            &mut image,
            br#"{"os":"linux","architecture":"amd64","config":{"Labels":{"a":"b"}},
                "history":[{"created_by":"RUN make","empty_layer":false},{"created_by":"CMD x","empty_layer":true}]}"#,
        );
        assert_eq!(image.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(image.labels["a"], "b");
        assert_eq!(image.history[0].created_by.as_deref(), Some("RUN make"));
        assert!(image.history[1].empty_layer);
        // `Labels: null`, as Docker writes it, is no labels.
        let mut other = ImageDetails::default();
        apply_config(&mut other, br#"{"config":{"Labels":null}}"#);
        assert!(other.labels.is_empty() && other.error.is_none());
    }

    #[test]
    fn configs_give_platform_and_creation_time() {
        let c = parse_config(
            br#"{"created":"2024-05-01T10:00:00Z","os":"linux","architecture":"arm","variant":"v7"}"#,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/arm/v7"));
        assert_eq!(c.created.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert!(parse_config(b"not json").platform.is_none());
    }
}
