// Dashboard behaviour beyond htmx: menu toggle, copy buttons, auto-submitting selects.
(function () {
  document.addEventListener("click", function (e) {
    var toggle = e.target.closest("[data-nav-toggle]");
    if (toggle) { document.body.classList.toggle("nav-open"); return; }
    if (document.body.classList.contains("nav-open") && !e.target.closest(".sidebar")) {
      document.body.classList.remove("nav-open");
    }
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      var el = document.getElementById(copy.getAttribute("data-copy"));
      if (el && navigator.clipboard) {
        navigator.clipboard.writeText(el.textContent.trim()).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1500);
        });
      }
    }
  });
  document.addEventListener("change", function (e) {
    var sel = e.target.closest("select[data-autosubmit]");
    if (sel && !sel.form.hasAttribute("hx-post")) { sel.form.requestSubmit(); }
  });
})();
// Upload progress for htmx file forms (a <progress data-upload-progress> inside the form).
document.addEventListener("htmx:xhr:progress", function (e) {
  var bar = e.target.querySelector && e.target.querySelector("[data-upload-progress]");
  if (bar && e.detail.lengthComputable) {
    bar.style.display = "block";
    bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
  }
});
// Forms that ask first (<form data-confirm="Leave Acme?">): no inline handlers, the CSP forbids them.
document.addEventListener("submit", function (e) {
  var form = e.target.closest && e.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
}, true);
// htmx requests: the target is marked busy (lists show their "Loading…" through hx-indicator); a
// list's filter form sends only the fields that are set (a clean, bookmarkable URL); a 4xx answer
// that re-renders the target (a form with its errors) is swapped in; any other failed answer, or no
// answer at all, leaves the page as it was and says so above the target.
(function () {
  function targetOf(e) { return (e.detail && (e.detail.target || e.detail.elt)) || e.target; }
  function clearError(el) {
    var prev = el && el.previousElementSibling;
    if (prev && prev.hasAttribute("data-htmx-error")) prev.remove();
  }
  function showError(e, text) {
    var el = targetOf(e);
    if (!el || !el.parentNode) return;
    clearError(el);
    var box = document.createElement("div");
    box.className = "form-errors htmx-error";
    box.setAttribute("role", "alert");
    box.setAttribute("data-htmx-error", "");
    box.textContent = text;
    el.parentNode.insertBefore(box, el);
  }
  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.verb !== "get" || !e.detail.elt.closest("[data-list-filters]")) return;
    var fd = e.detail.formData;
    Array.from(new Set(fd.keys())).forEach(function (k) {
      if (fd.getAll(k).every(function (v) { return v === ""; })) fd.delete(k);
    });
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    var el = targetOf(e);
    clearError(el);
    if (el && el.setAttribute) el.setAttribute("aria-busy", "true");
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var el = targetOf(e);
    if (el && el.removeAttribute) el.removeAttribute("aria-busy");
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr, el = e.detail.target;
    if (xhr.status >= 400 && xhr.status < 500 && el && el.id && xhr.responseText.indexOf('id="' + el.id + '"') !== -1) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  document.addEventListener("htmx:responseError", function (e) {
    var status = e.detail.xhr ? e.detail.xhr.status : 0;
    var why = status === 403 ? "your role does not allow this" : status === 404 ? "it no longer exists" :
      status >= 500 ? "the server failed (" + status + ")" : "the server refused it (" + status + ")";
    showError(e, "Could not load this: " + why + ". Nothing changed; try again or reload the page.");
  });
  document.addEventListener("htmx:sendError", function (e) {
    showError(e, "Could not reach the server. Check your connection, then try again.");
  });
  document.addEventListener("htmx:timeout", function (e) {
    showError(e, "The server took too long to answer. Try again.");
  });
})();
