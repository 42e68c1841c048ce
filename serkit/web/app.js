// serkit web page: send a recording to POST /v1/recognize and show the timeline it returns.
"use strict";

const $ = (id) => document.getElementById(id);
const status = $("status");

function say(text, isError = false) {
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function show(result) {
  const plot = $("plot");
  plot.src = "data:image/png;base64," + result.plot_png;
  plot.style.display = "block";
  const overall = result.label
    ? `Overall: ${result.label} (${(100 * result.probabilities[result.label]).toFixed(0)} %) over ` +
      `${result.segments.length} segment(s)`
    : "No speech found.";
  $("summary").textContent = `${result.file} — ${result.duration.toFixed(2)} s. ${overall}`;
  const head = $("segments-head");
  head.replaceChildren();
  for (const name of ["channel", "start (s)", "end (s)", "label", ...result.labels]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = $("segments").querySelector("tbody");
  body.replaceChildren();
  for (const seg of result.segments) {
    const row = document.createElement("tr");
    cell(row, seg.channel, "label");
    cell(row, seg.start.toFixed(2));
    cell(row, seg.end.toFixed(2));
    cell(row, seg.label, "label");
    for (const lab of result.labels) cell(row, seg.probabilities[lab].toFixed(2));
    body.appendChild(row);
  }
  $("segments").hidden = result.segments.length === 0;
}

async function recognise(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const perChannel = $("per-channel").checked;
  say(`Recognising ${name} …`);
  try {
    const token = $("token").value.trim();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(`/v1/recognize?plot=true&windows=false&per_channel=${perChannel}`,
                                 { method: "POST", body: form, headers });
    const result = await response.json();
    if (!response.ok) {
      say(`Error ${response.status} (${result.error}): ${result.message}`, true);
      return;
    }
    show(result);
    say(`Done: ${name}`);
  } catch (err) {
    say(`Request failed: ${err}`, true);
  }
}

$("upload").addEventListener("click", () => {
  const file = $("file").files[0];
  if (!file) { say("Choose a file first.", true); return; }
  recognise(file, file.name);
});

// Browsers record compressed WebM/Ogg, which the server's decoder may not read: decode the
// recording here with Web Audio and upload it as 16-bit PCM WAV, channels kept.
function encodeWav(buffer) {
  const channels = buffer.numberOfChannels, n = buffer.length, rate = buffer.sampleRate;
  const view = new DataView(new ArrayBuffer(44 + n * channels * 2));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + n * channels * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, channels, true); view.setUint32(24, rate, true);
  view.setUint32(28, rate * channels * 2, true); view.setUint16(32, channels * 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, n * channels * 2, true);
  const data = [];
  for (let c = 0; c < channels; c++) data.push(buffer.getChannelData(c));
  let offset = 44;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < channels; c++) {
      const x = Math.max(-1, Math.min(1, data[c][i]));
      view.setInt16(offset, x < 0 ? x * 32768 : x * 32767, true);
      offset += 2;
    }
  }
  return new Blob([view], { type: "audio/wav" });
}

let recorder = null;
let chunks = [];

$("record").addEventListener("click", async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    recorder = new MediaRecorder(stream);
  } catch (err) {
    say(`Microphone not available: ${err}`, true);
    return;
  }
  chunks = [];
  recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
  recorder.onstop = async () => {
    recorder.stream.getTracks().forEach((track) => track.stop());
    const recorded = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    try {
      const context = new AudioContext();
      const buffer = await context.decodeAudioData(await recorded.arrayBuffer());
      await context.close();
      recognise(encodeWav(buffer), "recording.wav");
    } catch (err) {
      say(`Could not decode the recording: ${err}`, true);
    }
  };
  recorder.start();
  $("record").disabled = true;
  $("stop").disabled = false;
  say("Recording … press stop when done.");
});

$("stop").addEventListener("click", () => {
  $("record").disabled = false;
  $("stop").disabled = true;
  if (recorder && recorder.state !== "inactive") recorder.stop();
});

fetch("/healthz").then((r) => r.json()).then((h) => {
  $("auth").hidden = !h.token_required;
  $("model").textContent = h.model ? `${h.model.model}, ${h.model.labels.join(", ")}` : "shown with the token";
}).catch(() => { $("model").textContent = "unavailable"; });
