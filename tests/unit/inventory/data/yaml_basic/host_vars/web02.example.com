env: web02_file
