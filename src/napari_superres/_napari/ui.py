"""Small Qt building blocks shared by the dock widgets: status line, job panel, folded sections.

All of them are built so that a dock never grows wider because of what it shows: text
wraps and is elided (the full text is in the tooltip), and nothing asks for a width.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QHBoxLayout, QProgressBar, QScrollArea, QSizePolicy, QVBoxLayout, QWidget
from superqt import QCollapsible, QElidingLabel

#: Lines a status line shows before eliding (the full text is in its tooltip).
STATUS_LINES = 3


def format_duration(seconds: float) -> str:
    """``83.2`` -> ``"1:23"``, ``3723`` -> ``"1:02:03"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StatusLine(QElidingLabel):
    """A wrapped, elided status label that never widens its dock; ``.value`` gets/sets the text."""

    def __init__(self, text: str = "", lines: int = STATUS_LINES, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        # ignore the text's width: the dock decides the width, the text wraps into it
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(0)
        self._lines = lines
        self.value = text

    @property
    def value(self) -> str:
        return self.text()

    @value.setter
    def value(self, text: str) -> None:
        text = str(text)
        self.setText(text)
        self.setToolTip(text)
        self.updateGeometry()

    def sizeHint(self):
        hint = super().sizeHint()
        line = self.fontMetrics().height()
        hint.setHeight(min(hint.height(), line * self._lines + 4))
        hint.setWidth(0)
        return hint

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setWidth(0)
        hint.setHeight(min(hint.height(), self.fontMetrics().height() * self._lines + 4))
        return hint

    def heightForWidth(self, width: int) -> int:
        return min(super().heightForWidth(width), self.fontMetrics().height() * self._lines + 4)


class JobPanel(QWidget):
    """A progress bar (hidden when idle) above a :class:`StatusLine`: a job's progress and ETA."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(True)
        self.bar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.bar.setToolTip("Progress of the running job (ETA from the rate so far)")
        self.bar.hide()
        self.status = StatusLine(parent=self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)

    def start(self, text: str, total: int = 0) -> None:
        self.bar.setRange(0, max(0, int(total)))  # (0, 0): busy indicator
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.bar.show()
        self.set_status(text)

    def stop(self) -> None:
        self.bar.hide()

    def set_status(self, text: str) -> None:
        self.status.value = text

    def set_progress(self, done: int, total: int, text: str | None = None, eta_s: float = math.nan) -> None:
        if total > 0:
            if self.bar.maximum() != total:
                self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            eta = f" · ETA {format_duration(eta_s)}" if math.isfinite(eta_s) else ""
            self.bar.setFormat(f"{done}/{total}{eta}")
        if text is not None:
            self.set_status(text)


def button_row(*buttons: Any) -> QWidget:
    """Native widgets (or magicgui widgets) side by side."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for button in buttons:
        layout.addWidget(getattr(button, "native", button))
    return row


def folded(title: str, content: Any, expanded: bool = False, tip: str | None = None) -> QCollapsible:
    """A collapsible section (folded by default) holding ``content`` (a QWidget or magicgui widget).

    ``tip``: the header's tooltip (default: what unfolding shows).
    """
    box = QCollapsible(title)
    box.setContentsMargins(0, 0, 0, 0)
    box.setToolTip(tip or f"Click to show or hide: {title}")
    box.toggleButton().setToolTip(box.toolTip())
    widget = getattr(content, "native", content)
    box.addWidget(widget)
    if expanded:
        box.expand(animate=False)
    else:
        box.collapse(animate=False)
    return box


def set_tips(tips: dict[Any, str]) -> None:
    """Set the tooltip of each magicgui widget (or QWidget) in ``tips``."""
    for widget, text in tips.items():
        if hasattr(widget, "tooltip"):
            widget.tooltip = text
        else:
            widget.setToolTip(text)


class VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls only vertically and is never narrower than its content's minimum.

    With the horizontal scroll bar off, a plain ``QScrollArea`` lets its dock shrink below what the
    controls need and clips them at the right edge; this one asks for the content's minimum width
    (plus the vertical scroll bar), so the dock gives every control its room.
    """

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        content = self.widget()
        if content is not None:
            bar = self.verticalScrollBar().sizeHint().width()
            hint.setWidth(content.minimumSizeHint().width() + bar + 2 * self.frameWidth())
        return hint


def scrolled(content: QWidget, min_height: int = 0) -> QScrollArea:
    """``content`` in a frameless vertical scroll area: a dock stays usable when the window is short."""
    scroll = VerticalScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    scroll.setMinimumHeight(min_height)
    return scroll


#: Height (px) a dock's scrolling settings keep at least, above its actions.
SETTINGS_MIN_HEIGHT = 60


def dock_layout(owner: QWidget, footer: list[QWidget], min_height: int = SETTINGS_MIN_HEIGHT) -> QVBoxLayout:
    """``owner``'s settings scroll (the returned layout fills the scroll area); ``footer`` never scrolls away.

    The actions (Run/Cancel, Start/Stop) and the job panel go in ``footer``: they stay in
    sight below the settings however short the dock gets (a 1280x800 screen with three docks).
    """
    layout = scrolling_layout(owner, min_height)
    outer = owner.layout()
    bottom = QWidget()
    column = QVBoxLayout(bottom)
    column.setContentsMargins(4, 2, 4, 4)
    column.setSpacing(2)
    for widget in footer:
        column.addWidget(getattr(widget, "native", widget))
    outer.addWidget(bottom, 0)
    return layout


def scrolling_layout(owner: QWidget, min_height: int = 100) -> QVBoxLayout:
    """Give ``owner`` one scroll area holding a new widget; returns that widget's (vertical) layout."""
    content = QWidget()
    layout = QVBoxLayout(content)
    layout.setContentsMargins(4, 4, 4, 4)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.setSpacing(0)
    outer.addWidget(scrolled(content, min_height), 1)
    return layout
