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
