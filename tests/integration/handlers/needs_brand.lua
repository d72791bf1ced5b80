-- needs_brand: a job type that must be queued for a brand.
return {
  label = "Needs a brand",
  brand = "required",
  datasets = { brand_things = { label = "Brand things", max_age = "1 day" } },
  run = function(job)
    return { brand = job.brand_id, records = 3 }
  end,
}
