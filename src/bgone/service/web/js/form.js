/* The settings form, generated from /openapi.json (x-fal-order-properties order, schema defaults):
   builds the fields, reads and writes their values, resets them. Knows nothing of the image or requests. */
import { ENDPOINT } from "./api.js";
import { S } from "./state.js";
import { $, el, humanize } from "./util.js";
import { unmarkField } from "./errors.js";

const SCHEMA_NAME = "BirefnetV2Input";

function resolveProp(schema, prop) {
  let out = { ...prop };
  const refs = [];
  if (prop.$ref) refs.push(prop.$ref);
  for (const part of prop.allOf || []) if (part.$ref) refs.push(part.$ref);
  for (const part of prop.anyOf || []) if (part.$ref) refs.push(part.$ref);
  for (const ref of refs) {
    const target = ref.split("/").slice(1).reduce((node, key) => (node ? node[key] : undefined), schema);
    if (target) out = { ...target, ...out, title: prop.title || undefined, description: prop.description || target.description };
  }
  if (!out.type && Array.isArray(prop.anyOf)) {
    const nonNull = prop.anyOf.find((p) => p.type && p.type !== "null");
    if (nonNull) out = { ...nonNull, ...out };
  }
  delete out.$ref;
  delete out.allOf;
  return out;
}

function findInputSchema(schema) {
  const comps = (schema.components && schema.components.schemas) || {};
  const path = schema.paths && schema.paths[`/queue/${ENDPOINT}`];
  const ref = path && path.post && path.post.requestBody && path.post.requestBody.content["application/json"].schema.$ref;
  if (ref) {
    const name = ref.split("/").pop();
    if (comps[name]) return comps[name];
  }
  return comps[SCHEMA_NAME];
}

export function buildForm(schema) {
  const input = findInputSchema(schema);
  if (!input) throw new Error("the input schema was not found in /openapi.json");
  const keys = Object.keys(input.properties || {});
  const order = (input["x-fal-order-properties"] || []).filter((k) => keys.includes(k));
  for (const k of keys) if (!order.includes(k)) order.push(k);
  S.order = order;
  S.required = input.required || [];
  for (const k of order) S.props[k] = resolveProp(schema, input.properties[k]);
  S.imageKey = order.find((k) => S.props[k].ui && S.props[k].ui.field === "image") || "image_url";

  const imageProp = S.props[S.imageKey];
  if (imageProp && imageProp.description) $("image-help").textContent = imageProp.description + ".";

  const box = $("fields");
  box.replaceChildren();
  // The image (the one required input) has its own widget above; the rest follow in schema order.
  for (const key of order) {
    if (key === S.imageKey) continue;
    box.append(buildField(key, S.props[key]));
  }
}

function buildField(key, prop) {
  const id = `f-${key}`;
  const label = prop.title || humanize(key);
  const long = prop.description && prop.description.length > 110;
  const help = prop.description ? el("p", { class: long ? "help clamp" : "help", id: `help-${key}`, text: prop.description }) : null;
  let helpNode = help;
  if (long) {
    const more = el("button", { type: "button", class: "linkbtn more", "aria-expanded": "false", "aria-controls": `help-${key}`, text: "More" });
    more.addEventListener("click", () => {
      const open = help.classList.toggle("clamp");
      more.setAttribute("aria-expanded", String(!open));
      more.textContent = open ? "More" : "Less";
    });
    helpNode = el("div", { class: "help-wrap" }, help, more);
  }
  const error = el("p", { class: "field-error", id: `err-${key}`, "data-testid": `error-${key}`, hidden: true });
  const describedBy = [help ? `help-${key}` : null, `err-${key}`].filter(Boolean).join(" ");
  let control;
  if (prop.type === "boolean") {
    control = el("input", {
      type: "checkbox",
      class: "switch",
      role: "switch",
      id,
      name: key,
      "data-testid": `field-${key}`,
      "aria-describedby": describedBy,
    });
    control.checked = !!prop.default;
    return el(
      "div",
      { class: "field", "data-field": key },
      el("div", { class: "switch-row" }, el("div", { class: "switch-text" }, el("label", { for: id, text: label }), helpNode), control),
      error,
    );
  }
  if (Array.isArray(prop.enum)) {
    control = el("select", { id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
    for (const value of prop.enum) control.append(el("option", { value: String(value), text: String(value) }));
    if (prop.default != null) control.value = String(prop.default);
  } else if (prop.type === "integer" || prop.type === "number") {
    control = el("input", {
      type: "number",
      id,
      name: key,
      "data-testid": `field-${key}`,
      "aria-describedby": describedBy,
      min: prop.minimum,
      max: prop.maximum,
      step: prop.type === "integer" ? 1 : "any",
    });
    if (prop.default != null) control.value = String(prop.default);
  } else {
    control = el("input", { type: "text", id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
    if (prop.default != null) control.value = String(prop.default);
  }
  return el("div", { class: "field", "data-field": key }, el("label", { for: id, text: label }), control, helpNode, error);
}

function fieldControl(key) {
  return document.getElementById(`f-${key}`);
}

export function formValues() {
  const values = {};
  for (const key of S.order) {
    if (key === S.imageKey) continue;
    const prop = S.props[key];
    const control = fieldControl(key);
    if (!control) continue;
    if (prop.type === "boolean") values[key] = control.checked;
    else if (prop.type === "integer" || prop.type === "number") {
      if (control.value !== "") values[key] = Number(control.value);
    } else if (Array.isArray(prop.enum)) {
      const match = prop.enum.find((v) => String(v) === control.value);
      values[key] = match === undefined ? control.value : match;
    } else if (control.value !== "" || S.required.includes(key)) values[key] = control.value;
  }
  return values;
}

export function setFormValues(input) {
  for (const key of S.order) {
    if (key === S.imageKey || !(key in input)) continue;
    const control = fieldControl(key);
    if (!control) continue;
    if (control.type === "checkbox") control.checked = !!input[key];
    else control.value = String(input[key]);
  }
}

/** Back to the schema's defaults (the caller refreshes what shows the values, e.g. the snippet). */
export function resetForm() {
  for (const key of S.order) {
    if (key === S.imageKey) continue;
    const control = fieldControl(key);
    const prop = S.props[key];
    if (!control) continue;
    if (control.type === "checkbox") control.checked = !!prop.default;
    else control.value = prop.default == null ? "" : String(prop.default);
    unmarkField(key);
  }
}
