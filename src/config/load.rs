//! Finding and reading the files of a config root.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, SourceFile, raw::RawFile, validate::validate};

/// Loads every config under `root`: single-config mode when `root` itself
/// holds `config.yml`/`config.yaml`, otherwise one config per sub-directory.
/// All failures are collected so one run reports every broken config.
pub fn load_root(root: &Path) -> Result<Vec<Config>, ConfigError> {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for (_, result) in load_each(root)? {
        match result {
            Ok(c) => configs.push(c),
            Err(e) => errors.push(e),
        }
    }
    match ConfigError::from_list(errors) {
        None => Ok(configs),
        Some(e) => Err(e),
    }
}

/// One config directory's id and what loading it gave.
pub type Loaded<T> = (String, Result<T, ConfigError>);

/// The config directories under `root`, each loaded on its own, with the
/// config id each one has (its directory name).
pub fn load_each(root: &Path) -> Result<Vec<Loaded<Config>>, ConfigError> {
    let meta = std::fs::metadata(root).map_err(|source| ConfigError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ConfigError::invalid(
            root,
            "--config",
            "must be a directory (a config directory, or a directory of config directories)",
        ));
    }
    let boundary = canonical(root)?;
    if is_single_config(root) {
        return Ok(vec![(id_of(root), load_within(root, &boundary))]);
    }
    let mut dirs = Vec::new();
    for path in read_dir(root)? {
        let real = resolve(&path, &boundary)?;
        if real.is_dir() && has_config_files(&path, &boundary)? {
            dirs.push(path);
        }
    }
    if dirs.is_empty() {
        return Err(ConfigError::invalid(
            root,
            "--config",
            "holds no config: expected config.yml here, or sub-directories with *.yml files",
        ));
    }
    Ok(dirs
        .iter()
        .map(|d| (id_of(d), load_within(d, &boundary)))
        .collect())
}

/// Whether `dir` is itself a config (NeMo's single-config mode).
pub fn is_single_config(dir: &Path) -> bool {
    dir.join("config.yml").is_file() || dir.join("config.yaml").is_file()
}

fn has_config_files(dir: &Path, boundary: &Path) -> Result<bool, ConfigError> {
    Ok(walk(dir, boundary)?
        .iter()
        .any(|p| is_yaml(p) || is_colang(p)))
}

/// Files and directories a config tree may hold at most (a bound on what
/// one walk reads, whatever the directory holds).
const MAX_ENTRIES: usize = 10_000;

/// A directory's entries, sorted, without dot-entries: hidden files, and
/// the `..data` / `..<timestamp>` directories of a Kubernetes ConfigMap
/// mount (its keys are symlinks into them, which are followed).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Where `path` really is, when it is a symlink: it must stay inside
/// `boundary` (a link to `/etc` is refused, naming the link, and nothing
/// of its target is read).
fn resolve(path: &Path, boundary: &Path) -> Result<PathBuf, ConfigError> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(path.to_path_buf());
    }
    let target = path.canonicalize().map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !target.starts_with(boundary) {
        return Err(ConfigError::invalid(
            path,
            "symlink",
            "links outside the config root; streamguard follows links only within it",
        ));
    }
    Ok(target)
}

/// Every file below `dir`, sorted, as NeMo's loader walks the tree; files
/// keep the name they have in the tree (a ConfigMap key), their content is
/// read through the link.
fn walk(dir: &Path, boundary: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut entries = 0usize;
    while let Some(d) = stack.pop() {
        // Links may lead back up: each real directory is walked once.
        if let Ok(real) = d.canonicalize()
            && !seen.insert(real)
        {
            continue;
        }
        for p in read_dir(&d)? {
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(ConfigError::invalid(
                    dir,
                    "--config",
                    format!("holds more than {MAX_ENTRIES} files and directories"),
                ));
            }
            let real = resolve(&p, boundary)?;
            if real.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn extension(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

fn is_yaml(p: &Path) -> bool {
    matches!(extension(p), Some("yml" | "yaml"))
}

fn is_colang(p: &Path) -> bool {
    extension(p) == Some("co")
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// A config's id: its directory's name.
fn id_of(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_string())
}

fn canonical(dir: &Path) -> Result<PathBuf, ConfigError> {
    dir.canonicalize().map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Loads and validates one config directory. The id is the directory name.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    load_within(dir, &canonical(dir)?)
}

/// [`load`], following symlinks only within `boundary`.
fn load_within(dir: &Path, boundary: &Path) -> Result<Config, ConfigError> {
    let id = id_of(dir);
    let mut parts = Vec::new();
    let mut colang = Vec::new();
    let mut actions = Vec::new();
    let mut kb = Vec::new();
    for file in walk(dir, boundary)? {
        let in_kb = file
            .strip_prefix(dir)
            .ok()
            .is_some_and(|r| r.starts_with("kb"));
        if is_colang(&file) {
            let text = read(&file)?;
            colang.push(SourceFile { path: file, text });
            continue;
        }
        // Python actions (where NeMo looks for them: `actions.py`, the
        // `actions/` folder, `config.py`) and knowledge-base documents are
        // the engine's to use or refuse; the config only records them.
        // Other Python files (a demo script beside the config) NeMo ignores.
        if extension(&file) == Some("py") {
            let rel = file.strip_prefix(dir).unwrap_or(&file);
            let at_top = |name: &str| rel == Path::new(name);
            if at_top("actions.py") || at_top("config.py") || rel.starts_with("actions") {
                actions.push(file);
            }
            continue;
        }
        if in_kb && extension(&file) == Some("md") {
            let text = read(&file)?;
            kb.push(SourceFile { path: file, text });
            continue;
        }
        if !is_yaml(&file) {
            continue;
        }
        let text = read(&file)?;
        // An empty file is a valid (empty) part, as in NeMo.
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            super::yaml::parse(&file, &text)?
        };
        parts.push((file, raw));
    }
    if parts.is_empty() {
        return Err(ConfigError::invalid(
            dir,
            "config.yml",
            "no *.yml or *.yaml files in the config directory",
        ));
    }
    let mut config = validate(id, dir, parts)?;
    if config.colang_2 {
        super::colang2::apply(&mut config, &colang)?;
    }
    config.colang = colang;
    config.action_files = actions;
    config.kb = kb;
    Ok(config)
}

/// Validates one YAML document as a whole config with id `id` (no directory;
/// errors name the file `<id>/config.yml`).
pub fn from_yaml(id: &str, yaml: &str) -> Result<Config, ConfigError> {
    let file = PathBuf::from(id).join("config.yml");
    let raw: RawFile = super::yaml::parse(&file, yaml)?;
    validate(id.to_string(), Path::new(id), vec![(file, raw)])
}
