// Shared files, the network part: uploads (XMLHttpRequest, for its upload progress) and
// downloads (fetch) with the login token as a bearer token. The decisions are in
// files.js; view.js shows what this reports.

import { filePath, uploadPath } from "./files.js";

/**
 * Upload `file` (a File) to `target`. `onProgress(loaded, total)` as it goes. Returns
 * {done, abort}: `done` resolves with the posted frame, or rejects with an Error whose
 * `status` is the HTTP status (0: no answer) and whose message is the server's text.
 */
export function upload(file, target, token, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", uploadPath(target, file.name));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.addEventListener("progress", (event) =>
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size),
    );
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) {
        try {
          resolve(JSON.parse(xhr.responseText));
          return;
        } catch {
          // fall through: an answer we do not understand
        }
      }
      reject(Object.assign(new Error(xhr.responseText || ""), { status: xhr.status }));
    });
    const failed = () => reject(Object.assign(new Error(""), { status: 0 }));
    xhr.addEventListener("error", failed);
    xhr.addEventListener("abort", failed);
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

/** The bytes of shared file `id` as a Blob; rejects with an Error carrying `status`. */
export async function fetchFile(id, token) {
  const response = await fetch(filePath(id), {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (!response.ok) {
    const said = await response.text().catch(() => "");
    throw Object.assign(new Error(said), { status: response.status });
  }
  return response.blob();
}

/** Fetch shared file `file` and hand it to the browser to save under its name. */
export async function saveFile(file, token) {
  const blob = await fetchFile(file.id, token);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = file.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
