// Export page: follows the export job over its WebSocket and shows the download link when it
// is done. The server renders the current state; this script only updates it.
(function () {
  const panel = document.getElementById("export");
  const initial = document.getElementById("export-state");
  if (!panel || !initial) return;
  const field = (name) => panel.querySelector(`[data-field="${name}"]`);

  function render(job) {
    const status = field("status");
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    const bar = panel.querySelector(".progress");
    bar.setAttribute("aria-valuenow", job.progress);
    bar.querySelector(".bar").style.width = `${job.progress}%`;
    field("progress").textContent = `${job.progress}%`;
    field("message").textContent = job.message;
    if (job.status === "succeeded" && job.result && !job.result.expired) {
      field("download").hidden = false;
      const n = job.result.images;
      const megabytes = (job.result.bytes / 1e6).toFixed(1);
      field("size").textContent = `${n} image${n === 1 ? "" : "s"}, ${megabytes} MB`;
    }
  }

  const job = JSON.parse(initial.textContent);
  render(job);
  if (!job.is_active) return;
  window.followJobState(job.id, render);
})();
