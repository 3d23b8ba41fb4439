// Live progress of the running jobs shown on a page (the home page's loop cards): each
// [data-live-job] element listens to its job's WebSocket, the same feed as the job page.
(function () {
  function follow(element) {
    const jobId = element.dataset.liveJob;
    const part = (name) => element.querySelector(`[data-live="${name}"]`);
    function render(job) {
      const skipped = job.result && job.result.skipped;
      const status = skipped ? "skipped" : job.status;
      part("status").textContent = status;
      part("status").className = `status ${status}`;
      part("bar").setAttribute("aria-valuenow", job.progress);
      part("bar").querySelector(".bar").style.width = `${job.progress}%`;
      part("progress").textContent = `${job.progress}%`;
      part("message").textContent = job.message;
    }

    window.followJobState(jobId, render);
  }

  document.querySelectorAll("[data-live-job]").forEach(follow);
})();
