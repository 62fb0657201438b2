// The service page: drop a photo, call the service's own endpoints (/v1/jnd, then /v1/compress at the recommended
// quality and a few QFs below the JND), and render the result with jnd_view.js. Same limits and token as any client.
(function () {
  "use strict";
  const settings = JSON.parse(document.getElementById("sgjnd-data").textContent);
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), input = $("file"), status = $("status"), result = $("result"), download = $("download");
  const tokenBox = $("token-box"), token = $("token");
  let urls = [];

  if (settings.token_required) {
    tokenBox.hidden = false;
    token.value = sessionStorage.getItem("sgjnd-token") || "";
    token.addEventListener("change", () => sessionStorage.setItem("sgjnd-token", token.value));
  }
  $("limits").textContent = `limits: ${(settings.max_body_bytes / 1048576).toFixed(0)} MiB per file, ` +
    `${(settings.max_pixels / 1e6).toFixed(0)} megapixels`;

  const say = (text, error) => { status.textContent = text; status.classList.toggle("error", !!error); };

  async function call(path, file) {
    const headers = {"Content-Type": file.type || "application/octet-stream"};
    if (settings.token_required && token.value) headers.Authorization = `Bearer ${token.value}`;
    const response = await fetch(path, {method: "POST", body: file, headers});
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        if (body && body.error) message = `${body.error.code}: ${body.error.message}`;
      } catch (e) { /* not our JSON: keep the status line */ }
      throw new Error(message);
    }
    return response;
  }

  async function compressed(file, margin) {
    const response = await call(`/v1/compress?margin=${margin}`, file);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    urls.push(url);
    const psnr = parseFloat(response.headers.get("X-SGJND-PSNR-dB"));
    return {url, blob, qf: Number(response.headers.get("X-SGJND-QF")),
            psnr: Number.isFinite(psnr) ? psnr : null};
  }

  async function run(file) {
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    result.replaceChildren();
    download.replaceChildren();
    delete document.body.dataset.rendered;
    if (file.size > settings.max_body_bytes) {
      say(`${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; this service takes at most ` +
          `${(settings.max_body_bytes / 1048576).toFixed(0)} MiB: send a smaller file`, true);
      return;
    }
    try {
      say(`predicting the JND of ${file.name} ...`);
      const prediction = await (await call("/v1/jnd", file)).json();
      say(`compressing ${file.name} at its recommended quality ...`);
      const recommended = await compressed(file, 0);
      const versions = [];
      const original = URL.createObjectURL(file);
      urls.push(original);
      const focus = bestPatch(prediction.patches);
      const size = focus ? Math.min(settings.patch_size, prediction.width - focus.x, prediction.height - focus.y) :
        settings.patch_size;
      const zoom = (src) => ({src, x: focus ? focus.x : 0, y: focus ? focus.y : 0, width: size, height: size});
      versions.push({label: "original", qf: null, bytes: file.size, psnr_db: null, zoom: zoom(original)});
      const label = prediction.recommended_qf === null ? "every QF visible: highest quality" : "recommended";
      versions.push({label, qf: recommended.qf, bytes: recommended.blob.size,
                     psnr_db: recommended.psnr, zoom: zoom(recommended.url)});
      if (prediction.jnd_qf !== null && prediction.jnd_qf > 1 && prediction.recommended_qf !== null) {
        const below = Math.max(1, prediction.jnd_qf - settings.below_steps);
        const visible = await compressed(file, below - recommended.qf);
        versions.push({label: "below the JND", qf: visible.qf, bytes: visible.blob.size, psnr_db: visible.psnr,
                       zoom: zoom(visible.url)});
      }
      const view = {
        title: file.name, width: prediction.width, height: prediction.height,
        patch_size: settings.patch_size, threshold: settings.threshold,
        jnd_qf: prediction.jnd_qf, recommended_qf: prediction.recommended_qf,
        series: [{label: prediction.backend, scores: prediction.scores, jnd_qf: prediction.jnd_qf,
                  recommended_qf: prediction.recommended_qf}],
        patches: prediction.patches,
        // The compressed JPEG always decodes in a browser (a TIFF original may not); same pixels grid.
        overview: {src: recommended.url, width: prediction.width, height: prediction.height},
        versions, focus: focus ? {x: focus.x, y: focus.y, size} : null,
        notes: prediction.notes,
      };
      result.appendChild(sgjndRender(view));
      const link = document.createElement("a");
      link.href = recommended.url;
      link.download = `${file.name.replace(/\.[^.]+$/, "")}.q${recommended.qf}.jpg`;
      link.className = "download";
      link.textContent = `Download the JPEG at QF ${recommended.qf} (${(recommended.blob.size / 1024).toFixed(1)} KiB)`;
      download.appendChild(link);
      say(`JND QF ${prediction.jnd_qf ?? "none"}, use QF ${prediction.recommended_qf ?? "none"} ` +
          `(${prediction.encoder_passes} encoder passes, ${Math.round(prediction.timings_ms.total)} ms)`);
      document.body.dataset.rendered = "1";
    } catch (err) {
      say(`${file.name}: ${err.message}`, true);
      document.body.dataset.rendered = "error";
    }
  }

  function bestPatch(patches) {
    let best = null;
    for (const p of patches) if (p.w !== null && Number.isFinite(p.w) && (!best || p.w > best.w)) best = p;
    return best;
  }

  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  input.addEventListener("change", () => { if (input.files.length) run(input.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) run(e.dataTransfer.files[0]);
  });
})();
