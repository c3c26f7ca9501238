// tokengate web UI: the little JavaScript the pages use. Everything works
// without it (confirmations are then a page of their own); with it:
//  * times are shown in the viewer's time zone (UTC stays on hover);
//  * a copy button for a new token;
//  * regenerate and delete ask in a dialog first;
//  * a page that shows a secret forgets it when left, and is fetched
//    again (never shown from the back/forward cache).
"use strict";

(function () {
  function localTimes() {
    var format;
    try {
      format = new Intl.DateTimeFormat(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      });
    } catch (e) {
      return;
    }
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.textContent = format.format(when);
      }
    });
  }

  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-copy"));
        if (!field) { return; }
        var done = function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 2000);
        };
        var fallback = function () {
          field.focus();
          field.select();
          try { document.execCommand("copy"); done(); } catch (e) { /* selected for the person */ }
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(field.value).then(done, fallback);
        } else {
          fallback();
        }
      });
    });
  }

  function confirmations() {
    var dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") { return; }
    var title = document.getElementById("confirm-title");
    var text = document.getElementById("confirm-text");
    var ok = dialog.querySelector("[data-confirm-ok]");
    var cancel = dialog.querySelector("[data-confirm-cancel]");
    var pending = null;
    var opener = null;
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        pending = form;
        opener = document.activeElement;
        title.textContent = form.getAttribute("data-confirm-title") || "Are you sure?";
        text.textContent = form.getAttribute("data-confirm");
        ok.textContent = form.getAttribute("data-confirm-button") || "Confirm";
        dialog.showModal();
        cancel.focus();
      });
    });
    ok.addEventListener("click", function () {
      if (!pending) { return; }
      var confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirmed";
      confirmed.value = "yes";
      pending.appendChild(confirmed);
      dialog.close();
      pending.submit();
    });
    cancel.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () {
      if (opener && typeof opener.focus === "function") { opener.focus(); }
    });
  }

  function expiryDates() {
    document.querySelectorAll("select[name=expires]").forEach(function (select) {
      var form = select.form;
      var dateField = form && form.querySelector("[data-when-date]");
      if (!dateField) { return; }
      var update = function () { dateField.hidden = select.value !== "date"; };
      select.addEventListener("change", update);
      update();
    });
  }

  function forgetSecrets() {
    if (!document.querySelector("[data-secret]")) { return; }
    window.addEventListener("pagehide", function () {
      document.querySelectorAll("[data-secret]").forEach(function (el) { el.value = ""; });
      document.querySelectorAll("[data-secret-box]").forEach(function (el) { el.remove(); });
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) { window.location.reload(); }
    });
  }

  function start() {
    localTimes();
    copyButtons();
    confirmations();
    expiryDates();
    forgetSecrets();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
