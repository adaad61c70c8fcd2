//! Themes name what a thing means (ok, error, focused border), never which widget it colours.
//!
//! The three bundled themes are embedded; `<project>/themes/NAME.yaml` is read over the
//! embedded theme of the same name (or `dark`), so a partial file works. Colour never carries
//! meaning alone: panes always pair it with a glyph or a word, which is what makes
//! `high-contrast` and `NO_COLOR` usable.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::{Deserialize, Deserializer};

use super::error::ConsoleError;

/// The theme used when none is chosen or the chosen one is broken.
pub const DEFAULT_THEME: &str = "dark";

/// Bundled themes: name and YAML source.
pub const BUNDLED: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.yaml")),
    ("light", include_str!("../../themes/light.yaml")),
    ("high-contrast", include_str!("../../themes/high-contrast.yaml")),
];

macro_rules! roles {
    ($($(#[$doc:meta])* $variant:ident => $field:ident),+ $(,)?) => {
        /// A meaning something on screen has. Theme files set one style per role.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Role {
            $($(#[$doc])* $variant,)+
        }

        impl Role {
            /// Every role, in declaration order.
            pub const ALL: &[Role] = &[$(Role::$variant,)+];

            /// The key used in theme files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Role::$variant => stringify!($field),)+
                }
            }
        }

        /// The `roles:` mapping of a theme file; absent roles keep the base theme's style.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RoleSpecs {
            $(#[serde(default)] $field: Option<StyleSpec>,)+
        }

        impl RoleSpecs {
            fn into_pairs(self) -> Vec<(Role, StyleSpec)> {
                let mut pairs = Vec::new();
                $(if let Some(spec) = self.$field {
                    pairs.push((Role::$variant, spec));
                })+
                pairs
            }
        }
    };
}

roles! {
    /// Ordinary text.
    Text => text,
    /// Secondary text: labels, timestamps, hints.
    Muted => muted,
    /// Pane titles.
    Title => title,
    /// Borders of panes without focus.
    Border => border,
    /// The border of the focused pane.
    FocusedBorder => focused_border,
    /// The selected row or node.
    Selection => selection,
    /// Emphasis without a judgement: keys in hints, the brand, related DAG nodes.
    Accent => accent,
    /// Success: succeeded tasks, closed breakers, healthy agents.
    Ok => ok,
    /// Needs attention: half-open breakers, retries, warnings, degraded agents.
    Warn => warn,
    /// Failure: failed tasks, open breakers, invalid definitions, denials.
    Error => error,
    /// Actions that change runtime state (dangerous keys, the Approve button).
    Danger => danger,
    /// Work in progress: running tasks, working instances.
    Running => running,
    /// Waiting: pending and ready tasks, reserved instances.
    Pending => pending,
    /// The run header row.
    Header => header,
    /// The status bar row.
    StatusBar => status_bar,
    /// The filled part of the progress gauge.
    GaugeFilled => gauge_filled,
    /// The empty part of the progress gauge.
    GaugeEmpty => gauge_empty,
    /// Popups and overlays (help, details, prompts).
    Overlay => overlay,
    /// The SIMULATED label.
    Simulated => simulated,
}

/// Styles for every role.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    name: String,
    styles: Vec<Style>,
}

impl Theme {
    /// The name shown in the status bar.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The style for a role.
    pub fn style(&self, role: Role) -> Style {
        Role::ALL
            .iter()
            .position(|r| *r == role)
            .and_then(|i| self.styles.get(i))
            .copied()
            .unwrap_or_default()
    }

    /// The default theme, from the embedded copy.
    pub fn fallback() -> Self {
        bundled(DEFAULT_THEME).unwrap_or_else(|| Self {
            name: DEFAULT_THEME.to_owned(),
            styles: vec![Style::default(); Role::ALL.len()],
        })
    }

    /// The same theme with colours removed (for `NO_COLOR`): modifiers stay, and roles whose
    /// meaning relied on colour get a modifier instead.
    #[must_use]
    pub fn monochrome(&self) -> Self {
        let styles = Role::ALL
            .iter()
            .zip(&self.styles)
            .map(|(role, style)| {
                let plain = Style::default().add_modifier(style.add_modifier);
                let extra = match role {
                    Role::Selection => Modifier::REVERSED,
                    Role::FocusedBorder | Role::Title | Role::Header | Role::Error => {
                        Modifier::BOLD
                    }
                    Role::Danger => Modifier::BOLD | Modifier::UNDERLINED,
                    Role::Muted => Modifier::DIM,
                    _ => Modifier::empty(),
                };
                plain.add_modifier(extra)
            })
            .collect();
        Self { name: format!("{} (no colour)", self.name), styles }
    }

    fn with(&self, name: &str, pairs: Vec<(Role, StyleSpec)>) -> Self {
        let mut styles = self.styles.clone();
        for (role, spec) in pairs {
            if let Some(slot) = Role::ALL.iter().position(|r| *r == role) {
                styles[slot] = spec.to_style();
            }
        }
        Self { name: name.to_owned(), styles }
    }
}

/// A theme and, when the requested one could not be used, why.
#[derive(Debug)]
pub struct LoadedTheme {
    pub theme: Theme,
    pub problem: Option<ConsoleError>,
}

/// Whether `NO_COLOR` asks for monochrome output (set and non-empty, per no-color.org).
pub fn no_color_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Load a theme by name: `<project_dir>/themes/NAME.yaml` over the embedded copy, else the
/// embedded copy. A broken or unknown theme gives the default and the problem to show.
pub fn load(project_dir: &Path, name: Option<&str>, no_color: bool) -> LoadedTheme {
    let name = name.unwrap_or(DEFAULT_THEME);
    let (theme, problem) = match load_named(project_dir, name) {
        Ok(theme) => (theme, None),
        Err(problem) => (Theme::fallback(), Some(problem)),
    };
    let theme = if no_color { theme.monochrome() } else { theme };
    LoadedTheme { theme, problem }
}

fn load_named(project_dir: &Path, name: &str) -> Result<Theme, ConsoleError> {
    let bundled_names = || BUNDLED.map(|(n, _)| n).join(", ");
    // The name becomes a path, so it may only be a plain file stem.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ConsoleError::ThemeUnknown { name: name.to_owned(), bundled: bundled_names() });
    }
    let file = project_dir.join("themes").join(format!("{name}.yaml"));
    match std::fs::read_to_string(&file) {
        Ok(source) => parse(name, &source, &file),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bundled(name).ok_or_else(|| {
            ConsoleError::ThemeUnknown { name: name.to_owned(), bundled: bundled_names() }
        }),
        Err(source) => Err(ConsoleError::ThemeRead { file, source }),
    }
}

/// The embedded copy of a bundled theme.
pub fn bundled(name: &str) -> Option<Theme> {
    let (_, source) = BUNDLED.iter().find(|(n, _)| *n == name)?;
    let file = PathBuf::from(format!("themes/{name}.yaml"));
    let base = Theme { name: name.to_owned(), styles: vec![Style::default(); Role::ALL.len()] };
    parse_over(&base, name, source, &file).ok()
}

/// Parse a theme file read over the embedded theme of the same name (or the default).
pub fn parse(name: &str, source: &str, file: &Path) -> Result<Theme, ConsoleError> {
    let base = bundled(name).unwrap_or_else(Theme::fallback);
    parse_over(&base, name, source, file)
}

fn parse_over(base: &Theme, name: &str, source: &str, file: &Path) -> Result<Theme, ConsoleError> {
    let parsed: ThemeFile = serde_norway::from_str(source).map_err(|err| {
        let line = err.location().map_or(0, |l| l.line());
        let text = err.to_string();
        // serde_norway writes "path.to.field: message at line L column C".
        let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
        let (field, message) = match text.split_once(": ") {
            Some((field, message)) if !field.contains(' ') => {
                (field.to_owned(), message.to_owned())
            }
            _ => ("(document)".to_owned(), text),
        };
        ConsoleError::ThemeInvalid { file: file.to_owned(), line, field, message }
    })?;
    Ok(base.with(name, parsed.roles.into_pairs()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    /// Informational; the file name decides the theme's name.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    roles: RoleSpecs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    #[serde(default)]
    fg: Option<ColorSpec>,
    #[serde(default)]
    bg: Option<ColorSpec>,
    #[serde(default)]
    modifiers: Vec<ModifierSpec>,
}

impl StyleSpec {
    fn to_style(&self) -> Style {
        let mut style = Style::default();
        if let Some(ColorSpec(fg)) = self.fg {
            style = style.fg(fg);
        }
        if let Some(ColorSpec(bg)) = self.bg {
            style = style.bg(bg);
        }
        for ModifierSpec(m) in &self.modifiers {
            style = style.add_modifier(*m);
        }
        style
    }
}

#[derive(Debug, Clone, Copy)]
struct ColorSpec(Color);

impl<'de> Deserialize<'de> for ColorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Color::from_str(&text).map(ColorSpec).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not a colour (use a name like `red`, `#rrggbb` or 0-255)"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct ModifierSpec(Modifier);

impl<'de> Deserialize<'de> for ModifierSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let modifier = match text.as_str() {
            "bold" => Modifier::BOLD,
            "dim" => Modifier::DIM,
            "italic" => Modifier::ITALIC,
            "underlined" => Modifier::UNDERLINED,
            "reversed" => Modifier::REVERSED,
            "crossed_out" => Modifier::CROSSED_OUT,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "`{text}` is not a modifier (bold, dim, italic, underlined, reversed, \
                     crossed_out)"
                )));
            }
        };
        Ok(ModifierSpec(modifier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_theme_parses_and_sets_every_role() {
        for (name, source) in BUNDLED {
            let parsed: ThemeFile =
                serde_norway::from_str(source).unwrap_or_else(|e| panic!("{name}: {e}"));
            let set: Vec<Role> = parsed.roles.into_pairs().into_iter().map(|(r, _)| r).collect();
            for role in Role::ALL {
                assert!(set.contains(role), "{name} does not set {}", role.as_str());
            }
        }
    }

    #[test]
    fn bad_colour_names_file_line_and_field() {
        let source = "roles:\n  ok:\n    fg: green\n  error:\n    fg: blurple\n";
        let err = parse("mine", source, Path::new("themes/mine.yaml")).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "themes/mine.yaml:5: roles.error: `blurple` is not a colour (use a name like `red`, \
             `#rrggbb` or 0-255)"
        );
    }

    #[test]
    fn unknown_role_is_named() {
        let source = "roles:\n  okk:\n    fg: green\n";
        let err = parse("mine", source, Path::new("t.yaml")).expect_err("invalid");
        let text = err.to_string();
        assert!(text.starts_with("t.yaml:2: roles: unknown field `okk`"), "{text}");
    }

    #[test]
    fn partial_file_keeps_base_roles() {
        let theme = parse("dark", "roles:\n  ok:\n    fg: '#010203'\n", Path::new("t.yaml"))
            .expect("valid");
        let dark = bundled("dark").expect("bundled");
        assert_eq!(theme.style(Role::Ok).fg, Some(Color::Rgb(1, 2, 3)));
        assert_eq!(theme.style(Role::Error), dark.style(Role::Error));
    }

    #[test]
    fn project_file_overrides_and_broken_file_falls_back_with_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("themes")).expect("mkdir");
        std::fs::write(dir.path().join("themes/dark.yaml"), "roles:\n  ok:\n    fg: red\n")
            .expect("write");
        let loaded = load(dir.path(), None, false);
        assert!(loaded.problem.is_none());
        assert_eq!(loaded.theme.style(Role::Ok).fg, Some(Color::Red));

        std::fs::write(dir.path().join("themes/light.yaml"), "roles: [\n").expect("write");
        let loaded = load(dir.path(), Some("light"), false);
        assert_eq!(loaded.theme.name(), "dark");
        let problem = loaded.problem.expect("problem").to_string();
        assert!(problem.contains("light.yaml:1"), "{problem}");

        let loaded = load(dir.path(), Some("../../etc/passwd"), false);
        assert!(matches!(loaded.problem, Some(ConsoleError::ThemeUnknown { .. })));
        let loaded = load(dir.path(), Some("neon"), false);
        assert!(loaded.problem.expect("unknown").to_string().contains("bundled: dark, light"));
    }

    #[test]
    fn no_color_strips_colours_and_keeps_meaning_in_modifiers() {
        let theme = Theme::fallback().monochrome();
        for role in Role::ALL {
            assert_eq!(theme.style(*role).fg, None);
            assert_eq!(theme.style(*role).bg, None);
        }
        assert!(theme.style(Role::Selection).add_modifier.contains(Modifier::REVERSED));
        assert!(no_color_requested(Some(std::ffi::OsStr::new("1"))));
        assert!(!no_color_requested(Some(std::ffi::OsStr::new(""))));
        assert!(!no_color_requested(None));
    }
}
