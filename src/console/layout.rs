//! Where each pane goes on screen. Pure: the reducer keeps the result in state so mouse clicks
//! can find the pane under the pointer, and rendering uses the same rectangles.

use ratatui::layout::{Position, Rect};

use super::state::PaneId;

/// Below this width Breakers joins the left column so the DAG keeps a useful width.
pub const THREE_COLUMNS_MIN_WIDTH: u16 = 100;
/// The smallest screen the full layout is drawn on; below it a centred message asks for more.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Rectangles of one screen. All empty when the screen is too small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScreenLayout {
    pub screen: Rect,
    pub header: Rect,
    pub agents: Rect,
    pub pool: Rect,
    pub dag: Rect,
    pub breakers: Rect,
    pub audit: Rect,
    pub status: Rect,
    pub too_small: bool,
}

impl ScreenLayout {
    /// Header row; left column Agents over Pool; DAG in the centre; Breakers on the right;
    /// Audit across the bottom; status bar. Narrow screens stack Breakers under Pool.
    pub fn compute(screen: Rect) -> Self {
        if screen.width < MIN_WIDTH || screen.height < MIN_HEIGHT {
            return Self { screen, too_small: true, ..Self::default() };
        }
        let header = Rect { height: 1, ..screen };
        let status = Rect { y: screen.bottom() - 1, height: 1, ..screen };
        let body_height = screen.height - 2;
        let audit_height = (body_height * 3 / 10).clamp(5, 14);
        let main_height = body_height - audit_height;
        let main = Rect { y: screen.y + 1, height: main_height, ..screen };
        let audit = Rect { y: main.bottom(), height: audit_height, ..screen };

        if screen.width < THREE_COLUMNS_MIN_WIDTH {
            let left_width = (screen.width * 2 / 5).clamp(22, 36);
            let agents_height = main_height * 2 / 5;
            let pool_height = (main_height - agents_height) / 2;
            let agents = Rect { width: left_width, height: agents_height, ..main };
            let pool = Rect { y: agents.bottom(), height: pool_height, ..agents };
            let breakers = Rect {
                y: pool.bottom(),
                height: main_height - agents_height - pool_height,
                ..agents
            };
            let dag = Rect { x: main.x + left_width, width: screen.width - left_width, ..main };
            return Self {
                screen,
                header,
                agents,
                pool,
                dag,
                breakers,
                audit,
                status,
                too_small: false,
            };
        }
        let left_width = (screen.width * 24 / 100).clamp(22, 40);
        let right_width = (screen.width * 24 / 100).clamp(22, 44);
        let dag_width = screen.width - left_width - right_width;
        let agents_height = main_height - main_height * 45 / 100;
        let agents = Rect { width: left_width, height: agents_height, ..main };
        let pool = Rect {
            y: main.y + agents_height,
            height: main_height - agents_height,
            width: left_width,
            ..main
        };
        let dag = Rect { x: main.x + left_width, width: dag_width, ..main };
        let breakers = Rect { x: dag.right(), width: right_width, ..main };
        Self { screen, header, agents, pool, dag, breakers, audit, status, too_small: false }
    }

    /// The rectangle of a pane.
    pub fn pane(&self, pane: PaneId) -> Rect {
        match pane {
            PaneId::Agents => self.agents,
            PaneId::Pool => self.pool,
            PaneId::Dag => self.dag,
            PaneId::Breakers => self.breakers,
            PaneId::Audit => self.audit,
        }
    }

    /// The pane under a screen position, if any.
    pub fn pane_at(&self, column: u16, row: u16) -> Option<PaneId> {
        let at = Position::new(column, row);
        PaneId::ORDER.into_iter().find(|pane| self.pane(*pane).contains(at))
    }
}

/// A rectangle of `width` x `height` centred in `area`, shrunk to fit.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_tile_the_body_without_overlap() {
        for (w, h) in [(60, 16), (99, 30), (100, 30), (120, 40), (160, 45), (300, 100)] {
            let layout = ScreenLayout::compute(Rect::new(0, 0, w, h));
            assert!(!layout.too_small);
            let cells: u32 = PaneId::ORDER.iter().map(|p| layout.pane(*p).area()).sum();
            assert_eq!(cells + u32::from(w) * 2, u32::from(w) * u32::from(h), "{w}x{h}");
            for a in PaneId::ORDER {
                for b in PaneId::ORDER {
                    if a != b {
                        assert!(!layout.pane(a).intersects(layout.pane(b)), "{a:?} {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn small_screens_get_no_panes() {
        for (w, h) in [(0, 0), (1, 1), (59, 40), (120, 15)] {
            let layout = ScreenLayout::compute(Rect::new(0, 0, w, h));
            assert!(layout.too_small);
            assert_eq!(layout.pane_at(0, 0), None);
        }
    }

    #[test]
    fn pane_at_finds_the_pane_under_the_pointer() {
        let layout = ScreenLayout::compute(Rect::new(0, 0, 120, 40));
        assert_eq!(layout.pane_at(1, 2), Some(PaneId::Agents));
        assert_eq!(layout.pane_at(60, 10), Some(PaneId::Dag));
        assert_eq!(layout.pane_at(119, 10), Some(PaneId::Breakers));
        assert_eq!(layout.pane_at(60, 37), Some(PaneId::Audit));
        assert_eq!(layout.pane_at(60, 0), None);
    }
}
