// Live progress of the running jobs shown on a page (the home page's loop cards, the loop page's
// running-job buttons and recent jobs): each [data-live-job] element listens to its job's
// WebSocket, the same feed as the job page, and fills the parts it has ([data-live="status"],
// "bar", "progress", "message"; a message part with data-max-chars is shortened to that length).
// One WebSocket per job, however many elements show it. An element with data-live-reload stands
// for a part of the page that the job's end changes (the loop page: a new version, the button
// back to "Train now"): when that job has finished, the page reloads, unless the user has typed
// into a form on it, in which case a notice offers the reload instead.
(function () {
  function shorten(text, max) {
    return max && text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function render(element, job) {
    const part = (name) => element.querySelector(`[data-live="${name}"]`);
    const skipped = job.result && job.result.skipped;
    const status = skipped ? "skipped" : job.status;
    const statusPart = part("status");
    if (statusPart) {
      statusPart.textContent = status;
      statusPart.className = `status ${status}`;
    }
    const bar = part("bar");
    if (bar) {
      bar.setAttribute("aria-valuenow", job.progress);
      bar.querySelector(".bar").style.width = `${job.progress}%`;
    }
    const progress = part("progress");
    if (progress) progress.textContent = `${job.progress}%`;
    const message = part("message");
    if (message) message.textContent = shorten(job.message || "", Number(message.dataset.maxChars || 0));
  }

  // Whether the user has changed a field of a form on the page (a reload would lose it).
  function formsTouched() {
    return Array.from(document.querySelectorAll("input, select, textarea")).some((field) => {
      if (field.type === "file") return field.files.length > 0;
      if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
      if (field.tagName === "SELECT") return Array.from(field.options).some((o) => o.selected !== o.defaultSelected);
      return field.value !== field.defaultValue;
    });
  }

  let stale = false;
  function pageIsStale(job) {
    if (stale) return;
    stale = true;
    if (!formsTouched()) {
      window.location.reload();
      return;
    }
    const notice = document.createElement("p");
    notice.className = "flash info";
    notice.setAttribute("role", "status");
    notice.dataset.testid = "stale-page";
    notice.append(`Job #${job.id} has ended (${job.status}). `);
    const link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "Reload the page";
    notice.append(link, " to see what changed.");
    const main = document.getElementById("main") || document.body;
    main.insertBefore(notice, main.firstChild);
  }

  const elementsByJob = new Map();
  document.querySelectorAll("[data-live-job]").forEach((element) => {
    const jobId = element.dataset.liveJob;
    if (!elementsByJob.has(jobId)) elementsByJob.set(jobId, []);
    elementsByJob.get(jobId).push(element);
  });
  elementsByJob.forEach((elements, jobId) => {
    window.followJobState(jobId, (job) => {
      elements.forEach((element) => render(element, job));
      if (!job.is_active && elements.some((element) => "liveReload" in element.dataset)) pageIsStale(job);
    });
  });
})();
