// Chat: a finished run's streamed replies, from its adapter and beside them from the base model; for a
// text-to-image run, a prompt and the generated image.
import {$, api, el, guarded} from "./util.js";

const chat = {history: {adapter: [], base: []}, busy: false};

async function refreshChatRuns() {
  const {runs: list} = await api("/api/runs");
  const select = $("#chat-run");
  const keep = select.value;
  select.replaceChildren(...list.filter((r) => r.status === "finished")
    .map((r) => el("option", {value: r.name, "data-task": r.task || "", text: `${r.name} (${r.task || "?"})`})));
  if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
  chatRunChanged();
}

function chatRunChanged() {
  const option = $("#chat-run").selectedOptions[0];
  const image = option && option.dataset.task === "text_to_image";
  for (const node of document.querySelectorAll(".text-only")) node.hidden = image;
  $("#chat-image").hidden = !image;
  resetChat();
}

function resetChat() {
  chat.history = {adapter: [], base: []};
  $("#chat-adapter-log").replaceChildren();
  $("#chat-base-log").replaceChildren();
}

async function streamReply(side, run) {
  const log = $(`#chat-${side}-log`);
  const bubble = el("div", {class: "message assistant streaming"});
  log.append(bubble);
  const response = await api("/api/chat", {run, messages: chat.history[side], adapter: side === "adapter",
    max_new_tokens: Number($("#chat-max").value) || 64}, {raw: true});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let reply = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reply += decoder.decode(value, {stream: true});
    bubble.textContent = reply;
    log.scrollTop = log.scrollHeight;
  }
  reply += decoder.decode();
  bubble.textContent = reply;
  bubble.classList.remove("streaming");
  chat.history[side].push({role: "assistant", content: reply});
}

async function sendChat() {
  const run = $("#chat-run").value;
  const text = $("#chat-input").value.trim();
  if (!run) throw new Error("No finished run to chat with yet");
  if (!text || chat.busy) return;
  chat.busy = true;
  $("#chat-send").disabled = true;
  $("#chat-input").value = "";
  const sides = $("#chat-base").checked ? ["adapter", "base"] : ["adapter"];
  try {
    for (const side of sides) {
      chat.history[side].push({role: "user", content: text});
      $(`#chat-${side}-log`).append(el("div", {class: "message user", text}));
    }
    for (const side of sides) await streamReply(side, run);  // one after the other: the CPU is shared
  } finally {
    chat.busy = false;
    $("#chat-send").disabled = false;
  }
}

async function generateImage() {
  const run = $("#chat-run").value;
  const prompt = $("#image-prompt").value.trim();
  if (!run || !prompt) return;
  $("#image-send").disabled = true;
  try {
    const result = await api("/api/generate-image", {run, prompt});
    $("#image-out").prepend(el("figure", {class: "thumb"}, el("img", {src: result.image, alt: prompt}), el("figcaption", {text: prompt})));
  } finally {
    $("#image-send").disabled = false;
  }
}

export function init() {
  $("#chat-run").addEventListener("change", chatRunChanged);
  $("#chat-reset").addEventListener("click", resetChat);
  $("#chat-send").addEventListener("click", guarded(sendChat));
  $("#chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(sendChat)(); });
  $("#chat-base").addEventListener("change", () => { $("#chat-base-col").hidden = !$("#chat-base").checked; });
  $("#image-send").addEventListener("click", guarded(generateImage));
  document.addEventListener("studio:tab", (e) => { if (e.detail === "chat") guarded(refreshChatRuns)(); });
}
