// Upload page and import page: sends the files with an upload progress bar, then follows the
// import job over its WebSocket and shows the per-file report when it finishes. The server
// renders the current state; this script only updates it (a reload loses nothing).
(function () {
  const form = document.getElementById("upload-form");
  const panel = document.getElementById("import");
  if (!panel) return;
  const field = (name) => panel.querySelector(`[data-field="${name}"]`);

  function setBar(bar, percent, label) {
    bar.setAttribute("aria-valuenow", Math.round(percent));
    bar.querySelector(".bar").style.width = `${percent}%`;
    bar.querySelector(".label").textContent = label;
  }

  function renderReport(result) {
    if (!result || !result.counts) return;
    const c = result.counts;
    field("summary").textContent =
      `${c.accepted} accepted, ${c.duplicate} duplicates, ${c.rejected} rejected, ` +
      `${c.warning || 0} warnings, ${c.ignored} ignored`;
    if (result.report_url) {
      field("full-report").hidden = false;
      field("report-link").href = result.report_url;
      const truncated = field("truncated");
      truncated.hidden = !result.report_truncated;
      truncated.textContent =
        `The table shows the first lines of each outcome (${result.report.length} of ${result.report_lines}).`;
    }
    const body = panel.querySelector("table.report tbody");
    body.replaceChildren(
      ...result.report.map((line) => {
        const row = document.createElement("tr");
        row.className = line.outcome;
        for (const text of [line.file, line.outcome, line.message]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        }
        return row;
      })
    );
  }

  function render(job) {
    const status = field("status");
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    setBar(panel.querySelector(".progress"), job.progress, `${job.progress}%`);
    field("message").textContent = job.message;
    if (!job.is_active) renderReport(job.result);
  }

  function follow(job) {
    panel.hidden = false;
    panel.dataset.jobId = job.id;
    const link = field("job-link");
    link.href = `/jobs/${job.id}/`;
    link.textContent = `job #${job.id}`;
    render(job);
    if (!job.is_active) return;
    window.followJobState(job.id, render);
  }

  const initial = document.getElementById("import-state");
  if (initial) follow(JSON.parse(initial.textContent));

  if (!form) return;
  const uploadBar = document.querySelector("[data-testid=upload-progress]");
  const errors = form.querySelector("[data-field=errors]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    errors.replaceChildren();
    const request = new XMLHttpRequest();
    request.open("POST", form.action || location.href);
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = (progress) => {
      if (progress.lengthComputable) {
        const percent = (100 * progress.loaded) / progress.total;
        setBar(uploadBar, percent, `uploading ${Math.round(percent)}%`);
      }
    };
    request.onload = () => {
      let data = {};
      try {
        data = JSON.parse(request.responseText);
      } catch (error) {
        data = { errors: [`The server answered ${request.status}.`] };
      }
      if (request.status === 200 && data.job) {
        setBar(uploadBar, 100, "uploaded");
        form.reset();
        history.replaceState(null, "", data.url);  // a reload shows the import page
        follow(data.job);
      } else {
        for (const message of data.errors || [`The server answered ${request.status}.`]) {
          const item = document.createElement("li");
          item.textContent = message;
          errors.appendChild(item);
        }
        uploadBar.hidden = true;
      }
    };
    request.onerror = () => {
      const item = document.createElement("li");
      item.textContent = "The upload failed (network error); nothing was imported.";
      errors.appendChild(item);
    };
    uploadBar.hidden = false;
    setBar(uploadBar, 0, "uploading 0%");
    request.send(new FormData(form));
  });
})();
