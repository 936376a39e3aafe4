//! A port of Go's `text/tabwriter` as forked by docker
//! (`cli/command/formatter/tabwriter`), for the settings docker uses:
//! no flags, padding with a non-tab character.
//!
//! Cells are tab-terminated (`\t`, or `\v`); `\n` ends a line and `\f` ends a
//! line and all columns. The text after a line's last tab is not part of a
//! column. A column block is a run of consecutive lines that all have a cell
//! in that column; its width is the widest cell plus padding, at least
//! `minwidth`. Cell width is the display width of the text (docker's fork uses
//! go-runewidth: East Asian wide characters count 2, combining marks 0).

/// One cell: `size` bytes of text of display `width`.
#[derive(Clone, Copy, Default, Debug)]
struct Cell {
    size: usize,
    width: usize,
}

struct Writer<'a> {
    minwidth: usize,
    padding: usize,
    padchar: char,
    text: &'a str,
    /// Byte offsets of each cell's text in `text`, parallel to `lines`.
    lines: Vec<Vec<(usize, Cell)>>,
    widths: Vec<usize>,
    out: String,
}

impl Writer<'_> {
    fn write_padding(&mut self, textw: usize, cellw: usize) {
        for _ in textw..cellw {
            self.out.push(self.padchar);
        }
    }

    fn write_lines(&mut self, line0: usize, line1: usize) {
        for i in line0..line1 {
            let line = self.lines[i].clone();
            for (j, (off, c)) in line.iter().enumerate() {
                if c.size > 0 {
                    self.out.push_str(&self.text[*off..off + c.size]);
                }
                if j < self.widths.len() {
                    self.write_padding(c.width, self.widths[j]);
                }
            }
            if i + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }

    fn format(&mut self, line0: usize, line1: usize) {
        let mut line0 = line0;
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // This line has a cell in `column`: print the lines before the
            // block, then find the block's extent and width.
            self.write_lines(line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                width = width.max(line[column].1.width + self.padding);
                this += 1;
            }
            self.widths.push(width);
            self.format(line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(line0, line1);
    }
}

/// Aligns `text` like `tabwriter.NewWriter(out, minwidth, tabwidth, padding,
/// padchar, 0)` followed by `Write(text)` and `Flush()`. `padchar` must not be
/// a tab (tab padding is not implemented; docker pads with spaces).
pub fn tabwrite(text: &str, minwidth: usize, padding: usize, padchar: char) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    // A formfeed terminates all columns: format each section on its own,
    // the formfeed printed as a newline.
    let mut sections = text.split('\u{c}').peekable();
    while let Some(section) = sections.next() {
        let last = sections.peek().is_none();
        out.push_str(&format_section(section, minwidth, padding, padchar, !last));
    }
    out
}

fn format_section(
    text: &str,
    minwidth: usize,
    padding: usize,
    padchar: char,
    ends_with_break: bool,
) -> String {
    let mut lines: Vec<Vec<(usize, Cell)>> = vec![Vec::new()];
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if matches!(b, b'\t' | b'\x0b' | b'\n') {
            let cell = Cell {
                size: i - start,
                width: display_width(&text[start..i]),
            };
            if let Some(line) = lines.last_mut() {
                line.push((start, cell));
            }
            start = i + 1;
            if b == b'\n' {
                lines.push(Vec::new());
            }
        }
    }
    // Trailing text is a cell; a formfeed also terminates an empty cell, and
    // ends the line like a newline.
    if start < text.len() || ends_with_break {
        let cell = Cell {
            size: text.len() - start,
            width: display_width(&text[start..]),
        };
        if let Some(line) = lines.last_mut() {
            line.push((start, cell));
        }
    }
    if ends_with_break {
        lines.push(Vec::new());
    }
    let mut w = Writer {
        minwidth,
        padding,
        padchar,
        text,
        lines,
        widths: Vec::new(),
        out: String::new(),
    };
    let n = w.lines.len();
    w.format(0, n);
    w.out
}

/// Display width of `s` as go-runewidth computes it (East Asian ambiguous
/// characters narrow). The tables cover the common ranges only.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Whether `c` is East Asian Wide or Fullwidth (width 2 in docker's output).
pub fn is_wide(c: char) -> bool {
    char_width(c) == 2
}

/// docker's `formatter.Ellipsis`: truncates `s` to `max_width` display
/// columns, the last one being `…`. Wide (East Asian) characters count 2.
pub fn ellipsis(s: &str, max_width: usize) -> String {
    if max_width == 0 {
        return String::new();
    }
    let chars: Vec<char> = s.chars().collect();
    if max_width == 1 {
        return chars.first().map(|c| c.to_string()).unwrap_or_default();
    }
    if s.len() == chars.len() {
        if s.len() <= max_width {
            return s.to_string();
        }
        return chars[..max_width - 1].iter().collect::<String>() + "…";
    }
    let mut display = Vec::with_capacity(chars.len());
    let mut total = 0;
    for &c in &chars {
        total += if is_wide(c) { 2 } else { 1 };
        display.push(total);
    }
    if total <= max_width {
        return s.to_string();
    }
    for i in 0..display.len().saturating_sub(1) {
        if display[i] < max_width && display[i + 1] >= max_width {
            return chars[..=i].iter().collect::<String>() + "…";
        }
    }
    s.to_string()
}

fn char_width(c: char) -> usize {
    let u = c as u32;
    if u < 0x20 || (0x7F..=0x9F).contains(&u) || u == 0xAD {
        return 0;
    }
    if u < 0x300 {
        return 1;
    }
    const ZERO: &[(u32, u32)] = &[
        (0x0300, 0x036F),
        (0x0483, 0x0489),
        (0x0591, 0x05BD),
        (0x05BF, 0x05BF),
        (0x05C1, 0x05C2),
        (0x05C4, 0x05C5),
        (0x05C7, 0x05C7),
        (0x0610, 0x061A),
        (0x064B, 0x065F),
        (0x0670, 0x0670),
        (0x06D6, 0x06DC),
        (0x06DF, 0x06E4),
        (0x06E7, 0x06E8),
        (0x06EA, 0x06ED),
        (0x0E31, 0x0E31),
        (0x0E34, 0x0E3A),
        (0x0E47, 0x0E4E),
        (0x1AB0, 0x1AFF),
        (0x1DC0, 0x1DFF),
        (0x200B, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x206F),
        (0x20D0, 0x20FF),
        (0x302A, 0x302D),
        (0x3099, 0x309A),
        (0xFE00, 0xFE0F),
        (0xFE20, 0xFE2F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0xE0000, 0xE007F),
        (0xE0100, 0xE01EF),
    ];
    const WIDE: &[(u32, u32)] = &[
        (0x1100, 0x115F),
        (0x231A, 0x231B),
        (0x2329, 0x232A),
        (0x23E9, 0x23EC),
        (0x23F0, 0x23F0),
        (0x23F3, 0x23F3),
        (0x25FD, 0x25FE),
        (0x2614, 0x2615),
        (0x2648, 0x2653),
        (0x267F, 0x267F),
        (0x2693, 0x2693),
        (0x26A1, 0x26A1),
        (0x26AA, 0x26AB),
        (0x26BD, 0x26BE),
        (0x26C4, 0x26C5),
        (0x26CE, 0x26CE),
        (0x26D4, 0x26D4),
        (0x26EA, 0x26EA),
        (0x26F2, 0x26F3),
        (0x26F5, 0x26F5),
        (0x26FA, 0x26FA),
        (0x26FD, 0x26FD),
        (0x2705, 0x2705),
        (0x270A, 0x270B),
        (0x2728, 0x2728),
        (0x274C, 0x274C),
        (0x274E, 0x274E),
        (0x2753, 0x2755),
        (0x2757, 0x2757),
        (0x2795, 0x2797),
        (0x27B0, 0x27B0),
        (0x27BF, 0x27BF),
        (0x2B1B, 0x2B1C),
        (0x2B50, 0x2B50),
        (0x2B55, 0x2B55),
        (0x2E80, 0x3029),
        (0x302E, 0x303E),
        (0x3041, 0x3098),
        (0x309B, 0x33FF),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xA000, 0xA4CF),
        (0xA960, 0xA97F),
        (0xAC00, 0xD7A3),
        (0xF900, 0xFAFF),
        (0xFE10, 0xFE19),
        (0xFE30, 0xFE6F),
        (0xFF00, 0xFF60),
        (0xFFE0, 0xFFE6),
        (0x16FE0, 0x16FE4),
        (0x17000, 0x18CFF),
        (0x1B000, 0x1B2FF),
        (0x1F004, 0x1F004),
        (0x1F0CF, 0x1F0CF),
        (0x1F18E, 0x1F18E),
        (0x1F191, 0x1F19A),
        (0x1F200, 0x1F251),
        (0x1F300, 0x1F320),
        (0x1F32D, 0x1F335),
        (0x1F337, 0x1F37C),
        (0x1F37E, 0x1F393),
        (0x1F3A0, 0x1F3CA),
        (0x1F3CF, 0x1F3D3),
        (0x1F3E0, 0x1F3F0),
        (0x1F3F4, 0x1F3F4),
        (0x1F3F8, 0x1F43E),
        (0x1F440, 0x1F440),
        (0x1F442, 0x1F4FC),
        (0x1F4FF, 0x1F53D),
        (0x1F54B, 0x1F54E),
        (0x1F550, 0x1F567),
        (0x1F57A, 0x1F57A),
        (0x1F595, 0x1F596),
        (0x1F5A4, 0x1F5A4),
        (0x1F5FB, 0x1F64F),
        (0x1F680, 0x1F6C5),
        (0x1F6CC, 0x1F6CC),
        (0x1F6D0, 0x1F6D2),
        (0x1F6D5, 0x1F6D7),
        (0x1F6DC, 0x1F6DF),
        (0x1F6EB, 0x1F6EC),
        (0x1F6F4, 0x1F6FC),
        (0x1F7E0, 0x1F7EB),
        (0x1F7F0, 0x1F7F0),
        (0x1F90C, 0x1F93A),
        (0x1F93C, 0x1F945),
        (0x1F947, 0x1F9FF),
        (0x1FA70, 0x1FAFF),
        (0x20000, 0x2FFFD),
        (0x30000, 0x3FFFD),
    ];
    let in_table = |t: &[(u32, u32)]| {
        t.binary_search_by(|&(lo, hi)| {
            if hi < u {
                std::cmp::Ordering::Less
            } else if lo > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
    };
    if in_table(ZERO) {
        0
    } else if in_table(WIDE) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(text: &str) -> String {
        tabwrite(text, 10, 3, ' ')
    }

    #[test]
    fn docker_table_settings() {
        // Expected output of tabwriter.NewWriter(out, 10, 1, 3, ' ', 0).
        assert_eq!(
            docker("REPOSITORY\tTAG\tIMAGE ID\nalpine\tlatest\tabc\nbusybox-long-name\t1\tdef\n"),
            "REPOSITORY          TAG       IMAGE ID\n\
             alpine              latest    abc\n\
             busybox-long-name   1         def\n"
        );
        // The last cell of a line is not padded, and trailing text without a
        // newline is written as is.
        assert_eq!(docker("a\tb"), "a         b");
        assert_eq!(docker("a\t"), "a");
        assert_eq!(docker("a\tb\t\n"), "a         b         \n");
        assert_eq!(docker(""), "");
        assert_eq!(docker("\n"), "\n");
        assert_eq!(docker("x\n"), "x\n");
    }

    #[test]
    fn column_blocks_are_contiguous_lines() {
        // Go doc example: b and c are in distinct column blocks.
        assert_eq!(
            tabwrite("aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n", 0, 1, '.'),
            "aaaa.bbb.d\naa...b...dd\na....\naa...cccc.eee\n"
        );
        // A line without tabs splits the blocks.
        assert_eq!(
            docker("a\tb\nplain\nlonger-cell\tc\n"),
            "a         b\nplain\nlonger-cell   c\n"
        );
    }

    #[test]
    fn empty_cells_and_wide_text() {
        assert_eq!(
            docker("\t\tx\ny\tz\tw\n"),
            "                    x\ny         z         w\n"
        );
        assert_eq!(docker("日本語\tx\nab\ty\n"), "日本語    x\nab        y\n");
        assert_eq!(docker("e\u{301}\tx\n"), "e\u{301}         x\n");
        assert_eq!(display_width("日本語 abc"), 10);
    }

    #[test]
    fn ellipsis_like_docker() {
        assert_eq!(ellipsis("abcdefg", 0), "");
        assert_eq!(ellipsis("abcdefg", 1), "a");
        assert_eq!(ellipsis("abcdefg", 7), "abcdefg");
        assert_eq!(ellipsis("abcdefg", 5), "abcd…");
        assert_eq!(ellipsis("日本語abc", 10), "日本語abc");
        assert_eq!(ellipsis("日本語abc", 5), "日本…");
        assert_eq!(ellipsis("日本語abc", 6), "日本…");
        assert_eq!(ellipsis("a日本語", 4), "a日…");
    }

    #[test]
    fn formfeed_ends_all_columns() {
        assert_eq!(
            docker("a\tb\n\u{c}longer-first\tc\n"),
            "a         b\n\nlonger-first   c\n"
        );
        // As docker prints `table {{.A}}\v{{.B}}\t\f{{.B}}`.
        assert_eq!(
            docker("DESC\u{b}NAME\t\u{c}NAME\nlong description\u{b}x\t\u{c}x\n"),
            "DESC      NAME      \nNAME\nlong description   x         \nx\n"
        );
    }
}
