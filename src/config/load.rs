//! Finding and reading the files of a config root.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, SourceFile, raw::RawFile, validate::validate};

/// Loads every config under `root`: single-config mode when `root` itself
/// holds `config.yml`/`config.yaml`, otherwise one config per sub-directory.
/// All failures are collected so one run reports every broken config.
pub fn load_root(root: &Path) -> Result<Vec<Config>, ConfigError> {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for result in load_each(root)? {
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

/// The config directories under `root`, each loaded on its own.
pub fn load_each(root: &Path) -> Result<Vec<Result<Config, ConfigError>>, ConfigError> {
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
    if is_single_config(root) {
        return Ok(vec![load(root)]);
    }
    let mut dirs = Vec::new();
    for path in read_dir(root)? {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if path.is_dir() && !hidden && has_config_files(&path)? {
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
    Ok(dirs.iter().map(|d| load(d)).collect())
}

/// Whether `dir` is itself a config (NeMo's single-config mode).
pub fn is_single_config(dir: &Path) -> bool {
    dir.join("config.yml").is_file() || dir.join("config.yaml").is_file()
}

fn has_config_files(dir: &Path) -> Result<bool, ConfigError> {
    Ok(walk(dir)?.iter().any(|p| is_yaml(p) || is_colang(p)))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        out.push(entry.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

/// Every file below `dir`, sorted, as NeMo's loader walks the tree.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in read_dir(&d)? {
            if p.is_dir() {
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

/// Loads and validates one config directory. The id is the directory name.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let id = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_string());
    let mut parts = Vec::new();
    let mut colang = Vec::new();
    let mut actions = Vec::new();
    let mut kb = Vec::new();
    for file in walk(dir)? {
        let in_kb = file
            .strip_prefix(dir)
            .ok()
            .is_some_and(|r| r.starts_with("kb"));
        if is_colang(&file) {
            let text = read(&file)?;
            colang.push(SourceFile { path: file, text });
            continue;
        }
        // Python actions and knowledge-base documents are the engine's to
        // use or refuse; the config only records them.
        if extension(&file) == Some("py") {
            actions.push(file);
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
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
                file: file.clone(),
                message: e.to_string(),
            })?
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
    config.colang = colang;
    config.action_files = actions;
    config.kb = kb;
    Ok(config)
}

/// Validates one YAML document as a whole config with id `id` (no directory;
/// errors name the file `<id>/config.yml`).
pub fn from_yaml(id: &str, yaml: &str) -> Result<Config, ConfigError> {
    let file = PathBuf::from(id).join("config.yml");
    let raw: RawFile = serde_yaml::from_str(yaml).map_err(|e| ConfigError::Parse {
        file: file.clone(),
        message: e.to_string(),
    })?;
    validate(id.to_string(), Path::new(id), vec![(file, raw)])
}
