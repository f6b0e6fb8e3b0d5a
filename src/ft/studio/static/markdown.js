// Text as the page shows it: a model card's markdown, a training log's terminal output.
import {el} from "./util.js";

// A model card needs headings, paragraphs, lists, code, tables and its run's images (`![alt](file)`, shown
// from fileUrl(file)); anything else shows as its text.
export function renderMarkdown(text, fileUrl) {
  const root = el("div", {class: "markdown"});
  const inline = (s) => {
    const span = el("span");
    s.split(/(`[^`]+`|\*\*[^*]+\*\*)/).forEach((part) => {
      if (part.startsWith("`") && part.endsWith("`") && part.length > 1) span.append(el("code", {text: part.slice(1, -1)}));
      else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) span.append(el("strong", {text: part.slice(2, -2)}));
      else span.append(part);
    });
    return span;
  };
  const lines = text.replace(/^---\n[\s\S]*?\n---\n/, "").split("\n");  // the card's YAML metadata
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      while (++i < lines.length && !lines[i].startsWith("```")) code.push(lines[i]);
      root.append(el("pre", {text: code.join("\n")}));
    } else if (/^!\[[^\]]*\]\([^)\s]+\)$/.test(line.trim())) {
      const [, alt, file] = line.trim().match(/^!\[([^\]]*)\]\(([^)\s]+)\)$/);
      if (!/^[a-z]+:/i.test(file)) root.append(el("img", {src: fileUrl(file), alt}));
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(6, line.indexOf(" ") + 1);
      root.append(el(`h${level}`, {}, inline(line.replace(/^#+ /, ""))));
    } else if (line.startsWith("|")) {
      const table = el("table", {class: "grid"});
      for (; i < lines.length && lines[i].startsWith("|"); i++) {
        if (/^\|[\s:|-]+\|$/.test(lines[i])) continue;
        const cells = lines[i].slice(1, -1).split("|").map((c) => el("td", {}, inline(c.trim())));
        table.append(el("tr", {}, ...cells));
      }
      i--;
      root.append(table);
    } else if (/^\s*[-*] /.test(line)) {
      const list = el("ul");
      for (; i < lines.length && /^\s*[-*] /.test(lines[i]); i++) list.append(el("li", {}, inline(lines[i].replace(/^\s*[-*] /, ""))));
      i--;
      root.append(list);
    } else if (line.trim()) {
      root.append(el("p", {}, inline(line)));
    }
  }
  return root;
}

// The log as a terminal would leave it: progress bars redraw their line (\r) and move the cursor (ESC[A).
export function terminalText(text) {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").split("\n")
    .map((line) => line.split("\r").filter((part) => part.trim()).pop() || "")
    .filter((line, i, lines) => line || (i > 0 && lines[i - 1])).join("\n");
}

