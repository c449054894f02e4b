"""Control characters made visible: what of a snippet's own text may reach a terminal.

The ANSI answer carries the formatter's colour sequences and nothing else that a terminal
acts on: the code's C0 controls (but tab and newline), DEL and C1 controls become visible
symbols (a sequence that would set the window's title, move the cursor or clear the screen
is shown, not obeyed). Shared by the highlighter and the worker, so it imports nothing."""

from __future__ import annotations

CONTROL_PICTURES: dict[int, int] = {
    **{code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"},
    0x7F: 0x2421,
    **{code: 0xFFFD for code in range(0x80, 0xA0)},
}
