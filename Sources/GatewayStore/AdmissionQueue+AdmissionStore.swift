/// The SQLite store's admissions.
extension AdmissionQueue: AdmissionStore {}
