//! The cryptographic module this build links (AWS-LC, or AWS-LC-FIPS with the `fips` feature)
//! and FIPS mode: entering it at start-up, and describing it for `--version`, `status` and the
//! audit log. Owns no policy: callers decide whether a non-FIPS build may mount.

use serde::Serialize;

/// True in a build with the `fips` Cargo feature (aws-lc-rs on AWS-LC-FIPS).
pub const FIPS_BUILD: bool = cfg!(feature = "fips");

/// What `--version`, `status` and the `MountStarted` audit record say about the crypto module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// `"AWS-LC FIPS"` or `"AWS-LC"`.
    pub module: &'static str,
    /// The linked library's version (e.g. `"4.2.0"` for AWS-LC FIPS 4.2.0).
    pub version: String,
    /// Whether the module reports FIPS mode (`FIPS_mode() == 1`).
    pub fips_mode: bool,
}

impl ModuleInfo {
    /// `AWS-LC FIPS 4.2.0 (aws-lc-rs), FIPS mode: on`
    pub fn summary(&self) -> String {
        format!(
            "{} {} (aws-lc-rs), FIPS mode: {}",
            self.module,
            self.version,
            if self.fips_mode { "on" } else { "off" }
        )
    }
}

/// The module linked into this binary and whether it is in FIPS mode now.
pub fn module_info() -> ModuleInfo {
    ModuleInfo {
        module: if FIPS_BUILD { "AWS-LC FIPS" } else { "AWS-LC" },
        version: aws_lc_rs::awslc_version().to_string(),
        fips_mode: aws_lc_rs::try_fips_mode().is_ok(),
    }
}

/// Why the module is not usable in FIPS mode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FipsError {
    #[error(
        "this cmkfs build does not use a FIPS validated module (fips = \"required\"); install the build made with --features fips"
    )]
    NotFipsBuild,
    #[error("the crypto module is not in FIPS mode: {0}")]
    NotInFipsMode(&'static str),
    #[error("the crypto module's self-tests failed")]
    SelfTest,
}

/// Enters FIPS mode: checks that the module reports FIPS mode (its power-on self-tests and
/// integrity check ran when it was loaded; a failure there aborts the process inside the
/// module) and runs every known-answer self-test once more. In a build without the `fips`
/// feature this fails with [`FipsError::NotFipsBuild`].
pub fn enter_fips_mode() -> Result<ModuleInfo, FipsError> {
    if !FIPS_BUILD {
        return Err(FipsError::NotFipsBuild);
    }
    aws_lc_rs::try_fips_mode().map_err(FipsError::NotInFipsMode)?;
    aws_lc_rs::try_fips_self_test().map_err(|_| FipsError::SelfTest)?;
    Ok(module_info())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_info_matches_the_build() {
        let m = module_info();
        assert!(!m.version.is_empty());
        assert_eq!(m.fips_mode, FIPS_BUILD);
        assert_eq!(m.module == "AWS-LC FIPS", FIPS_BUILD);
        let s = m.summary();
        assert!(s.ends_with(if FIPS_BUILD {
            "FIPS mode: on"
        } else {
            "FIPS mode: off"
        }));
    }

    #[test]
    fn enter_fips_mode_only_in_the_fips_build() {
        match enter_fips_mode() {
            Ok(m) => assert!(m.fips_mode && m.module == "AWS-LC FIPS"),
            Err(e) => assert_eq!((e, FIPS_BUILD), (FipsError::NotFipsBuild, false)),
        }
    }
}
